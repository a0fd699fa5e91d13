package procfs

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// SocketUID returns the owner of the TCP socket whose local address is local
// and whose peer is remote: the uid of the process that created it, or, for
// a connection a listener accepted (or is about to accept), the listener's.
// So the server side of a connection made to local names who listens there.
// found is false when no such socket exists (yet: a connection the kernel
// has not finished setting up is not found). IPv4 addresses are also looked
// for as IPv4-mapped IPv6 ones (a dual-stack listener's connections).
//
// It asks the kernel over sock_diag netlink (a hash lookup, microseconds),
// and reads /proc/net/tcp and /proc/net/tcp6 (which every process may read,
// but which the kernel builds by walking every socket: tens of
// milliseconds on a machine with a large socket table) only where sock_diag
// is unavailable.
func SocketUID(local, remote netip.AddrPort) (uid uint32, found bool, err error) {
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	families := []uint8{unix.AF_INET6}
	if local.Addr().Is4() && remote.Addr().Is4() {
		families = []uint8{unix.AF_INET, unix.AF_INET6}
	}
	for _, f := range families {
		uid, found, err = sockDiagUID(f, local, remote)
		if errors.Is(err, errNoSockDiag) {
			return procSocketUID(local, remote)
		}
		if err != nil || found {
			return uid, found, err
		}
	}
	return 0, false, nil
}

// procSocketUID is SocketUID from /proc/net/tcp{,6}.
func procSocketUID(local, remote netip.AddrPort) (uid uint32, found bool, err error) {
	if local.Addr().Is4() && remote.Addr().Is4() {
		uid, found, err = findSocket("/proc/net/tcp", hexAddrPort(local), hexAddrPort(remote))
		if err != nil || found {
			return uid, found, err
		}
		local = netip.AddrPortFrom(netip.AddrFrom16(local.Addr().As16()), local.Port())
		remote = netip.AddrPortFrom(netip.AddrFrom16(remote.Addr().As16()), remote.Port())
	}
	return findSocket("/proc/net/tcp6", hexAddrPort(local), hexAddrPort(remote))
}

// findSocket finds the line of table whose local and remote address fields
// are local and remote, and returns its uid field.
func findSocket(table string, local, remote []byte) (uint32, bool, error) {
	b, err := os.ReadFile(table)
	if err != nil {
		if os.IsNotExist(err) { // no IPv6 in this kernel
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("read %s: %w", table, err)
	}
	// "  sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt   uid  timeout inode"
	needle := make([]byte, 0, len(local)+len(remote)+3)
	needle = append(append(append(append(append(needle, ' '), local...), ' '), remote...), ' ')
	for len(b) > 0 {
		i := bytes.Index(b, needle)
		if i < 0 {
			return 0, false, nil
		}
		line := b[i+len(needle):]
		if j := bytes.IndexByte(line, '\n'); j >= 0 {
			line = line[:j]
		}
		b = b[i+len(needle):]
		// st tx:rx tr:when retrnsmt uid
		f := bytes.Fields(line)
		if len(f) < 5 {
			continue
		}
		uid, err := strconv.ParseUint(string(f[4]), 10, 32)
		if err != nil {
			return 0, false, fmt.Errorf("parse uid %q in %s: %w", f[4], table, err)
		}
		return uint32(uid), true, nil
	}
	return 0, false, nil
}

// hexAddrPort formats ap as /proc/net/tcp{,6} does: the address as 32-bit
// words in the machine's byte order, each as 8 upper-case hex digits, then
// ':' and the port as 4 hex digits.
func hexAddrPort(ap netip.AddrPort) []byte {
	raw := ap.Addr().AsSlice()
	out := make([]byte, 0, 2*len(raw)+5)
	var word [4]byte
	for i := 0; i+4 <= len(raw); i += 4 {
		binary.BigEndian.PutUint32(word[:], binary.NativeEndian.Uint32(raw[i:i+4]))
		out = hex.AppendEncode(out, word[:])
	}
	out = append(out, ':')
	out = hex.AppendEncode(out, []byte{byte(ap.Port() >> 8), byte(ap.Port())})
	return bytes.ToUpper(out)
}
