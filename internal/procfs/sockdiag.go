package procfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// The layout of the kernel's sock_diag messages (linux/inet_diag.h).
const (
	nlmsgHdrLen   = 16
	sockIDLen     = 48                       // inet_diag_sockid
	diagReqLen    = 8 + sockIDLen            // inet_diag_req_v2
	diagMsgUIDOff = 4 + sockIDLen + 12       // inet_diag_msg.idiag_uid
	diagMsgLen    = 4 + sockIDLen + 5*4      // inet_diag_msg
	tcpAllStates  = 0xffffffff               // every TCP state
	noCookie      = 0xffffffff               // INET_DIAG_NOCOOKIE
	diagReqTotal  = nlmsgHdrLen + diagReqLen // the request's length
)

// errNoSockDiag means the kernel has no sock_diag for TCP (a kernel built
// without it, or a sandbox that forbids netlink).
var errNoSockDiag = errors.New("sock_diag unavailable")

// sockDiagUID asks the kernel, over NETLINK_SOCK_DIAG, for the one TCP socket
// of family whose local and remote addresses are local and remote: a hash
// lookup, where /proc/net/tcp walks every socket of the machine.
func sockDiagUID(family uint8, local, remote netip.AddrPort) (uint32, bool, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, false, fmt.Errorf("%w: %w", errNoSockDiag, err)
	}
	defer unix.Close(fd)

	var req [diagReqTotal]byte
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], diagReqTotal)
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], 1) // sequence
	r := req[nlmsgHdrLen:]
	r[0], r[1] = family, unix.IPPROTO_TCP
	ne.PutUint32(r[4:], tcpAllStates)
	id := r[8:]
	binary.BigEndian.PutUint16(id[0:], local.Port())
	binary.BigEndian.PutUint16(id[2:], remote.Port())
	copy(id[4:20], addrBytes(family, local.Addr()))
	copy(id[20:36], addrBytes(family, remote.Addr()))
	ne.PutUint32(id[40:], noCookie)
	ne.PutUint32(id[44:], noCookie)
	if err := unix.Sendto(fd, req[:], 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, false, fmt.Errorf("%w: send: %w", errNoSockDiag, err)
	}

	var buf [1024]byte
	n, _, err := unix.Recvfrom(fd, buf[:], 0)
	if err != nil {
		return 0, false, fmt.Errorf("%w: receive: %w", errNoSockDiag, err)
	}
	msg := buf[:n]
	if len(msg) < nlmsgHdrLen {
		return 0, false, fmt.Errorf("%w: short answer", errNoSockDiag)
	}
	switch typ := ne.Uint16(msg[4:]); typ {
	case unix.NLMSG_ERROR:
		if len(msg) < nlmsgHdrLen+4 {
			return 0, false, fmt.Errorf("%w: short error", errNoSockDiag)
		}
		errno := syscall.Errno(-int32(ne.Uint32(msg[nlmsgHdrLen:])))
		if errno == unix.ENOENT {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("%w: %w", errNoSockDiag, errno)
	case unix.SOCK_DIAG_BY_FAMILY:
		body := msg[nlmsgHdrLen:]
		if len(body) < diagMsgLen {
			return 0, false, fmt.Errorf("%w: short socket", errNoSockDiag)
		}
		switch body[1] {
		case tcpNewSynRecv: // a connection not yet set up: no owner in its answer
			return 0, false, nil
		case tcpListen: // the kernel's fallback when no connection matches
			return 0, false, nil
		}
		return ne.Uint32(body[diagMsgUIDOff:]), true, nil
	default:
		return 0, false, fmt.Errorf("%w: answer of type %d", errNoSockDiag, typ)
	}
}

// The TCP states sockDiagUID does not take for the socket it asked for:
// TCP_NEW_SYN_RECV, a connection the kernel has not finished setting up
// (its answer carries uid 0), and TCP_LISTEN, the listener the kernel's
// lookup falls back to when no connection matches.
const (
	tcpListen     = 10
	tcpNewSynRecv = 12
)

// addrBytes is a's 16 bytes of inet_diag_sockid's src or dst: IPv4 in the
// first 4 for AF_INET, the IPv6 (or IPv4-mapped) address for AF_INET6.
func addrBytes(family uint8, a netip.Addr) []byte {
	if family == unix.AF_INET {
		b := a.Unmap().As4()
		return b[:]
	}
	b := a.As16()
	return b[:]
}
