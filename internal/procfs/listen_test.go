package procfs

import (
	"net"
	"net/netip"
	"os"
	"testing"
)

// TestListeners finds this process's own IPv4 and IPv6 listeners, with
// their address, owner and inode; a connected (not
// listening) socket is not among them.
func TestListeners(t *testing.T) {
	tests := []struct{ name, network, listen string }{
		{"IPv4", "tcp4", "127.0.0.1:0"},
		{"IPv6", "tcp6", "[::1]:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen(tt.network, tt.listen)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			want := ln.Addr().(*net.TCPAddr).AddrPort()
			conn, err := net.Dial(tt.network, want.String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			client := conn.LocalAddr().(*net.TCPAddr).AddrPort()

			ls, err := Listeners()
			if err != nil {
				t.Fatal(err)
			}
			var found *Listener
			for i, l := range ls {
				if l.Addr.Port() == client.Port() {
					t.Errorf("the client side %v is listed as a listener", client)
				}
				if l.Addr == netip.AddrPortFrom(want.Addr().Unmap(), want.Port()) {
					found = &ls[i]
				}
			}
			if found == nil {
				t.Fatalf("listener %v not among %d listeners", want, len(ls))
			}
			if found.UID != uint32(os.Getuid()) {
				t.Errorf("owner uid %d, want %d", found.UID, os.Getuid())
			}
			if found.Inode == 0 {
				t.Error("no inode")
			}
		})
	}
}

// TestParseListenersRejectsMalformedTables: a table the kernel would never
// write is an error, not a silently shorter list.
func TestParseListenersRejectsMalformedTables(t *testing.T) {
	const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	tests := []struct {
		name, line string
		wantErr    bool
		want       int
	}{
		{"listener", "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0 100 0 0 10 0", false, 1},
		{"established is skipped", "   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4243 1 0 100 0 0 10 0", false, 0},
		{"bad address", "   0: XYZ:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1", true, 0},
		{"bad uid", "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  -1        0 4242 1", true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls, err := parseListeners([]byte(header + tt.line + "\n"))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if len(ls) != tt.want {
				t.Fatalf("%d listeners, want %d", len(ls), tt.want)
			}
			if tt.want == 1 && (ls[0].Addr != netip.MustParseAddrPort("127.0.0.1:8080") || ls[0].UID != 1000 || ls[0].Inode != 4242) {
				t.Errorf("parsed %+v", ls[0])
			}
		})
	}
}
