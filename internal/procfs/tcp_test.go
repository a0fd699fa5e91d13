package procfs

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
)

// TestSocketUID connects to listeners of this process and finds the server
// side of each connection, owned by this process's uid, through sock_diag
// and through /proc/net/tcp; a connection that does not exist is not found
// (not even as the listener of its port).
func TestSocketUID(t *testing.T) {
	tests := []struct{ name, network, listen string }{
		{"IPv4 listener", "tcp4", "127.0.0.1:0"},
		{"dual-stack listener", "tcp", "[::]:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen(tt.network, tt.listen)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			port := ln.Addr().(*net.TCPAddr).Port
			conn, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			server := conn.RemoteAddr().(*net.TCPAddr).AddrPort()
			client := conn.LocalAddr().(*net.TCPAddr).AddrPort()
			gone := netip.AddrPortFrom(client.Addr(), client.Port()+1)
			for name, lookup := range map[string]func(l, r netip.AddrPort) (uint32, bool, error){
				"sock_diag": SocketUID, "/proc/net/tcp": procSocketUID,
			} {
				uid, found, err := lookup(server, client)
				if err != nil || !found || uid != uint32(os.Getuid()) {
					t.Errorf("%s: owner of (%s, %s) = %d, %v, %v; want %d, true", name, server, client, uid, found, err, os.Getuid())
				}
				if _, found, err := lookup(server, gone); found || err != nil {
					t.Errorf("%s: a connection that does not exist: found %v, err %v", name, found, err)
				}
			}
		})
	}
}
