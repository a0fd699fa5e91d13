package preview

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
)

// maxRepicks bounds how many ports in a row a start tries when each is held
// by someone else.
const maxRepicks = 8

// repick moves the dev server to a port from PickPort.
func (d *devServer) repick() error {
	port, err := d.cfg.PickPort()
	if err != nil {
		return fmt.Errorf("pick another port: %w", err)
	}
	d.mu.Lock()
	d.port = port
	d.mu.Unlock()
	return nil
}

// Port returns the dev server's current port: Port, or the one PickPort gave
// it when that was held by someone else.
func (d *devServer) Port() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.port
}

// loopbackURL is http://127.0.0.1:port.
func loopbackURL(port int) *url.URL {
	return &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
}
