package inspect_test

// A minimal client of the Chrome DevTools protocol, written with the
// standard library only, so that the browser test lives in the root module
// without a test dependency (chromedp would need one): Chromium is started
// by its command line, and the test speaks the protocol over a WebSocket
// (RFC 6455, client side, text frames) to the page's target. Calls are
// synchronous: one command at a time, events read and dropped, so there is
// no reader goroutine to own.

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// chromiumNames are the commands tried, in order, after $QPOOL_CHROMIUM.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// browser is a headless Chromium the test started, with a DevTools
// connection to its one page.
type browser struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	err    error         // cmd.Wait's, once exited is closed
	dir    string
	log    *os.File
	conn   net.Conn
	rd     *bufio.Reader
	nextID int
}

// startBrowser starts headless Chromium with an empty profile and connects
// to its page. The flags keep it off the network (this machine's closed
// network refuses Chromium's background connections) and make screenshots
// repeatable.
func startBrowser(width, height int) (b *browser, err error) {
	bin := os.Getenv("QPOOL_CHROMIUM")
	if bin == "" {
		for _, name := range chromiumNames {
			if p, err := exec.LookPath(name); err == nil {
				bin = p
				break
			}
		}
	}
	if bin == "" {
		return nil, errors.New("no Chromium found (tried $QPOOL_CHROMIUM, " + strings.Join(chromiumNames, ", ") + ")")
	}
	dir, err := os.MkdirTemp("", "qpool-chromium-")
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	b = &browser{dir: dir, log: log}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\nChromium's stderr:\n%s", err, b.stderr())
			b.close()
			b = nil
		}
	}()
	b.cmd = exec.Command(bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--disable-default-apps", "--no-default-browser-check",
		"--mute-audio", "--hide-scrollbars", "--force-device-scale-factor=1",
		fmt.Sprintf("--window-size=%d,%d", width, height),
		"--user-data-dir="+filepath.Join(dir, "profile"),
		"--remote-debugging-port=0", "about:blank")
	b.cmd.Stdout, b.cmd.Stderr = log, log // files: no copying goroutines
	// Its own process group, so that close ends Chromium's helpers too.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		b.cmd = nil
		return b, fmt.Errorf("start %s: %w", bin, err)
	}
	// The waiter is the browser's: it ends when Chromium does, which
	// close forces.
	b.exited = make(chan struct{})
	go func() {
		b.err = b.cmd.Wait()
		close(b.exited)
	}()
	// Chromium writes the port it chose to DevToolsActivePort.
	var port string
	deadline := time.Now().Add(30 * time.Second)
	for port == "" {
		if time.Now().After(deadline) {
			return b, errors.New("Chromium wrote no DevToolsActivePort within 30s")
		}
		select {
		case <-b.exited:
			return b, fmt.Errorf("%s exited before it listened: %v", bin, b.err)
		default:
		}
		if data, err := os.ReadFile(filepath.Join(dir, "profile", "DevToolsActivePort")); err == nil {
			if line, _, ok := strings.Cut(string(data), "\n"); ok {
				port = strings.TrimSpace(line)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	wsURL, err := pageTarget("127.0.0.1:" + port)
	if err != nil {
		return b, err
	}
	return b, b.dial(wsURL)
}

func (b *browser) stderr() string {
	if b == nil || b.dir == "" {
		return ""
	}
	data, _ := os.ReadFile(filepath.Join(b.dir, "stderr.log"))
	return string(data)
}

// pageTarget asks the DevTools HTTP endpoint for the page's WebSocket.
func pageTarget(addr string) (string, error) {
	var targets []struct {
		Type string `json:"type"`
		WS   string `json:"webSocketDebuggerUrl"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/json/list")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&targets)
			resp.Body.Close()
			for _, t := range targets {
				if t.Type == "page" && t.WS != "" {
					return t.WS, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no page target at %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dial opens the WebSocket: an HTTP/1.1 upgrade, checked as RFC 6455 says.
func (b *browser) dial(wsURL string) error {
	u, err := url.Parse(wsURL)
	if err != nil {
		return err
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return err
	}
	b.conn, b.rd = conn, bufio.NewReader(conn)
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", u.RequestURI(), u.Host, key)
	resp, err := http.ReadResponse(b.rd, nil)
	if err != nil {
		return fmt.Errorf("websocket handshake: %w", err)
	}
	resp.Body.Close()
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != http.StatusSwitchingProtocols ||
		resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		return fmt.Errorf("websocket handshake: %s", resp.Status)
	}
	return nil
}

// writeFrame sends one masked frame (clients must mask).
func (b *browser) writeFrame(opcode byte, payload []byte) error {
	hdr := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n <= 0xFFFF:
		hdr = append(hdr, 0x80|126, byte(n>>8), byte(n))
	default:
		hdr = binary.BigEndian.AppendUint64(append(hdr, 0x80|127), uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	hdr = append(hdr, mask[:]...)
	masked := make([]byte, len(payload))
	for i, c := range payload {
		masked[i] = c ^ mask[i%4]
	}
	_, err := b.conn.Write(append(hdr, masked...))
	return err
}

// readMessage returns the next text message, answering pings and joining
// fragments.
func (b *browser) readMessage() ([]byte, error) {
	var msg []byte
	for {
		var h [2]byte
		if _, err := io.ReadFull(b.rd, h[:]); err != nil {
			return nil, err
		}
		fin, opcode := h[0]&0x80 != 0, h[0]&0x0F
		n := uint64(h[1] & 0x7F)
		switch n {
		case 126:
			var ext [2]byte
			if _, err := io.ReadFull(b.rd, ext[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(ext[:]))
		case 127:
			var ext [8]byte
			if _, err := io.ReadFull(b.rd, ext[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(ext[:])
		}
		var mask [4]byte
		if h[1]&0x80 != 0 {
			if _, err := io.ReadFull(b.rd, mask[:]); err != nil {
				return nil, err
			}
		}
		if n > 64<<20 {
			return nil, fmt.Errorf("websocket frame of %d bytes", n)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(b.rd, payload); err != nil {
			return nil, err
		}
		if h[1]&0x80 != 0 {
			for i := range payload {
				payload[i] ^= mask[i%4]
			}
		}
		switch opcode {
		case 0x8:
			return nil, errors.New("websocket closed by Chromium")
		case 0x9:
			if err := b.writeFrame(0xA, payload); err != nil {
				return nil, err
			}
			continue
		case 0xA:
			continue
		}
		msg = append(msg, payload...)
		if fin {
			return msg, nil
		}
	}
}

// call sends one command and returns its result, dropping the events that
// arrive before it.
func (b *browser) call(method string, params any, result any) error {
	b.nextID++
	id := b.nextID
	req, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err != nil {
		return err
	}
	_ = b.conn.SetDeadline(time.Now().Add(20 * time.Second))
	if err := b.writeFrame(0x1, req); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	for {
		msg, err := b.readMessage()
		if err != nil {
			return fmt.Errorf("%s: %w", method, err)
		}
		var resp struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(msg, &resp); err != nil {
			return fmt.Errorf("%s: %w", method, err)
		}
		if resp.ID != id {
			continue // an event
		}
		if resp.Error != nil {
			return fmt.Errorf("%s: %s", method, resp.Error.Message)
		}
		if result == nil {
			return nil
		}
		return json.Unmarshal(resp.Result, result)
	}
}

// eval evaluates a JavaScript expression in the page (awaiting a promise)
// and decodes its value into result.
func (b *browser) eval(expr string, result any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	err := b.call("Runtime.evaluate", map[string]any{
		"expression": expr, "returnByValue": true, "awaitPromise": true,
	}, &r)
	if err != nil {
		return err
	}
	if r.Exception != nil {
		return fmt.Errorf("%s: %s %s", expr, r.Exception.Text, r.Exception.Exception.Description)
	}
	if result == nil || len(r.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(r.Result.Value, result)
}

// screenshot returns a PNG of the page's viewport.
func (b *browser) screenshot() ([]byte, error) {
	var r struct {
		Data string `json:"data"`
	}
	if err := b.call("Page.captureScreenshot", map[string]any{"format": "png"}, &r); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(r.Data)
}

// close ends Chromium and its helpers (its process group), waits for it,
// and removes its profile.
func (b *browser) close() {
	if b == nil {
		return
	}
	if b.conn != nil {
		b.conn.Close()
	}
	if b.cmd != nil && b.cmd.Process != nil {
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.exited
	}
	if b.log != nil {
		b.log.Close()
	}
	_ = os.RemoveAll(b.dir)
}
