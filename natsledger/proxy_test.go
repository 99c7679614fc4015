package natsledger_test

import (
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// proxy forwards TCP connections from a loopback port to a server and can
// hold back everything the server sends (acknowledgements, consumer
// deliveries) while the client's messages still reach the server: from
// the client's side, answers are lost, although the server stored what it
// was sent.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cond  *sync.Cond
	held  bool
	conns []net.Conn
	done  bool

	wg sync.WaitGroup
}

// startProxy forwards a random loopback port to the server's port;
// t.Cleanup closes it and waits for its goroutines.
func startProxy(t *testing.T, port int) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, target: "127.0.0.1:" + strconv.Itoa(port)}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

// hold stops forwarding what the server sends until release.
func (p *proxy) hold() {
	p.mu.Lock()
	p.held = true
	p.mu.Unlock()
}

// release forwards again, starting with what was held.
func (p *proxy) release() {
	p.mu.Lock()
	p.held = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		if p.done {
			p.mu.Unlock()
			_ = c.Close()
			_ = s.Close()
			return
		}
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Go(func() { p.copy(s, c, false) })
		p.wg.Go(func() { p.copy(c, s, true) })
	}
}

// copy forwards src to dst until either fails; gated copies wait while
// the proxy holds.
func (p *proxy) copy(dst, src net.Conn, gated bool) {
	defer func() { _ = dst.Close(); _ = src.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if gated && !p.gate() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// gate waits while the proxy holds; false once it is closed.
func (p *proxy) gate() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.held && !p.done {
		p.cond.Wait()
	}
	return !p.done
}

func (p *proxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.done = true
	p.cond.Broadcast()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
