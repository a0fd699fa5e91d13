package procfs

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Listener is one listening TCP socket.
type Listener struct {
	// Addr is the address it listens on.
	Addr netip.AddrPort
	// UID owns it: the uid of the process that created it.
	UID uint32
	// Inode names the socket.
	Inode uint64
}

// tcpListenHex is TCP_LISTEN as /proc/net/tcp's st column writes it.
const tcpListenHex = "0A"

// Listeners returns every listening TCP socket, IPv4 and IPv6, of the
// caller's network namespace, from /proc/net/tcp and /proc/net/tcp6 (which
// every process may read).
func Listeners() ([]Listener, error) {
	var out []Listener
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			if os.IsNotExist(err) { // no IPv6 in this kernel
				continue
			}
			return nil, fmt.Errorf("read %s: %w", table, err)
		}
		ls, err := parseListeners(b)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", table, err)
		}
		out = append(out, ls...)
	}
	return out, nil
}

// parseListeners returns the listening sockets of a /proc/net/tcp{,6} table:
// "sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...".
func parseListeners(table []byte) ([]Listener, error) {
	var out []Listener
	lines := bytes.Split(table, []byte{'\n'})
	for i, line := range lines {
		f := bytes.Fields(line)
		if i == 0 || len(f) < 10 || string(f[3]) != tcpListenHex {
			continue
		}
		addr, err := parseHexAddrPort(string(f[1]))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		uid, err := strconv.ParseUint(string(f[7]), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("line %d: uid %q: %w", i+1, f[7], err)
		}
		inode, err := strconv.ParseUint(string(f[9]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: inode %q: %w", i+1, f[9], err)
		}
		out = append(out, Listener{Addr: addr, UID: uint32(uid), Inode: inode})
	}
	return out, nil
}

// parseHexAddrPort reads an address as hexAddrPort writes it.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	hexAddr, hexPort, ok := strings.Cut(s, ":")
	if !ok || len(hexPort) != 4 || (len(hexAddr) != 8 && len(hexAddr) != 32) {
		return netip.AddrPort{}, fmt.Errorf("address %q: not ADDR:PORT in hex", s)
	}
	raw, err := hex.DecodeString(hexAddr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", s, err)
	}
	for i := 0; i+4 <= len(raw); i += 4 { // each 32-bit word in the machine's order
		binary.NativeEndian.PutUint32(raw[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port %q: %w", s, err)
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr, uint16(port)), nil
}
