package natsjobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// maxBatchKeys bounds the keys of one batched read (the server answers at
// most 1024 messages to one).
const maxBatchKeys = 256

// batchGetter reads keys of one KV bucket for many callers at once: a
// worker runs many jobs at a time, and each job reads a key before it runs
// (has the job an outcome?) and another after it records its outcome (has
// it dependents?). One direct get per read made those reads a good part of
// the server's work and of each job's time; the getter sends the reads
// waiting at one moment as one batched direct get (multi_last, nats-server
// 2.11+), which the server answers with the keys found and an end marker,
// or a single "no results" when none is (the usual case).
//
// It batches on its own, with no timer: the first read when none is in
// flight goes at once (so a read alone costs what a plain get costs), and
// reads that come while one is in flight wait for it and go together next.
//
// Consistency: a batched direct get reads the stream's stored state when
// the server handles it, as a plain KV get does, so a read sent after an
// acknowledged write sees it (store.release and store.dependents rely on
// that); the server takes the stream's read lock for the whole batch. That
// holds with one replica only, where the one server is the leader: a
// replicated bucket gets no batched reader (newBatchGetter), and is read
// through its leader, one key at a time (kvBucket).
//
// Protocol (one batch in flight): the fields from mu on are guarded by mu
// (those before it are set once, by newBatchGetter). startLocked takes up
// to maxBatchKeys pending reads into a batch and makes it the one in
// flight; only finish ends it (on its end marker, "no results", an error
// reply, its timer, a failed send or close), which takes it out of
// inflight under mu, resolves its reads outside mu, and starts the next
// batch from those pending. A batch's found map and its reads (which
// retryMissing trims, putting the keys a cut-short reply left out back in
// front of pending) change only under mu while it is in flight, so the
// finish that takes it out owns it. A reply whose token is not the batch
// in flight belongs to a batch that ended (a timeout) and is dropped. A
// caller whose context ends leaves its read to be resolved into the void
// (done is closed, no one listens). Who may break it: anything that
// changed inflight or a batch in flight outside these functions.
type batchGetter struct {
	nc      *nats.Conn
	subject string // the direct get API subject of the bucket's stream
	prefix  string // "$KV.<bucket>."
	inbox   string // replies come to inbox.<token>
	sub     *nats.Subscription

	mu       sync.Mutex
	pending  []*batchRead
	inflight *readBatch
	seq      uint64
	closed   bool
}

// batchRead is one key read.
type batchRead struct {
	key  string
	done chan struct{} // closed when val, found and err are set
	val  []byte
	// found is false for a key that does not exist or was deleted.
	found bool
	err   error
}

type readBatch struct {
	token string
	reads []*batchRead
	found map[string][]byte // filled by the reply handler under mu
	timer *time.Timer
}

// errGetterClosed resolves reads still waiting when the getter closes.
var errGetterClosed = errors.New("natsjobs: batched reads closed")

// newBatchGetter returns a getter for kv, or nil if the bucket cannot be
// read with batched direct gets (direct gets not allowed, or a mirror):
// then callers read key by key.
func newBatchGetter(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue) (*batchGetter, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, err
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return nil, nil
	}
	info := bs.StreamInfo()
	// A bucket with replicas is not read in batches: a direct get may be
	// answered by a follower behind the leader, and these reads must see
	// every acknowledged write (kvBucket in leader.go); one leader get
	// per key there.
	if info == nil || !info.Config.AllowDirect || info.Config.Replicas > 1 ||
		info.Config.Mirror != nil || len(info.Config.Sources) > 0 {
		return nil, nil
	}
	nc := js.Conn()
	g := &batchGetter{
		nc:      nc,
		subject: apiPrefix(js) + "DIRECT.GET." + info.Config.Name,
		prefix:  "$KV." + kv.Bucket() + ".",
		inbox:   nc.NewInbox(),
	}
	if g.sub, err = nc.Subscribe(g.inbox+".*", g.onReply); err != nil {
		return nil, err
	}
	return g, nil
}

// get reads key: its value and whether it exists, or the error that kept
// the read from being made. Bounded by ctx and by opTimeout.
func (g *batchGetter) get(ctx context.Context, key string) ([]byte, bool, error) {
	return g.start(key).wait(ctx)
}

// start sends a read of key (with the others waiting, see batchGetter)
// without waiting for it, so that a caller can make several reads at once.
func (g *batchGetter) start(key string) *batchRead {
	r := &batchRead{key: key, done: make(chan struct{})}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		r.err = errGetterClosed
		close(r.done)
		return r
	}
	g.pending = append(g.pending, r)
	var b *readBatch
	if g.inflight == nil {
		b = g.startLocked()
	}
	g.mu.Unlock()
	if b != nil {
		g.send(b)
	}
	return r
}

// wait waits for r: the value and whether the key exists, or the error
// that kept the read from being made.
func (r *batchRead) wait(ctx context.Context) ([]byte, bool, error) {
	select {
	case <-r.done:
		return r.val, r.found, r.err
	case <-ctx.Done():
		return nil, false, context.Cause(ctx)
	}
}

// startLocked makes a batch of the pending reads the one in flight, or
// returns nil if none is pending. mu is held.
func (g *batchGetter) startLocked() *readBatch {
	if len(g.pending) == 0 || g.closed {
		return nil
	}
	n := min(len(g.pending), maxBatchKeys)
	g.seq++
	b := &readBatch{token: strconv.FormatUint(g.seq, 10), found: map[string][]byte{}}
	b.reads = append([]*batchRead(nil), g.pending[:n]...)
	g.pending = append(g.pending[:0:0], g.pending[n:]...)
	g.inflight = b
	b.timer = time.AfterFunc(opTimeout, func() { g.finish(b, fmt.Errorf("natsjobs: batched read: %w", context.DeadlineExceeded)) })
	return b
}

// send sends b's request; a failed send ends b with the error.
func (g *batchGetter) send(b *readBatch) {
	subjects := make([]string, 0, len(b.reads))
	seen := make(map[string]bool, len(b.reads))
	for _, r := range b.reads {
		if !seen[r.key] {
			seen[r.key] = true
			subjects = append(subjects, g.prefix+r.key)
		}
	}
	// max_bytes: the server cuts a reply at max_pending bytes by default,
	// which is also where it drops a client as a slow consumer (the reply
	// was lost and the read timed out: TestBatchedReadsCutShort); the
	// largest message it accepts is well below that, so a reply cut at
	// that size (plus its last message) is safe, and the rest is read
	// again (see onReply).
	req, err := json.Marshal(struct {
		MultiLast []string `json:"multi_last"`
		MaxBytes  int64    `json:"max_bytes"`
	}{subjects, g.nc.MaxPayload()})
	if err == nil {
		err = g.nc.PublishRequest(g.subject, g.inbox+"."+b.token, req)
	}
	if err != nil {
		g.finish(b, err)
	}
}

// onReply handles one message of a batch's reply: a key's last message,
// the end marker, "no results" or an error.
func (g *batchGetter) onReply(m *nats.Msg) {
	token := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	status := m.Header.Get("Status")
	g.mu.Lock()
	b := g.inflight
	if b == nil || b.token != token {
		g.mu.Unlock()
		return // a batch that ended already
	}
	if status == "" {
		k, ok := strings.CutPrefix(m.Header.Get(jetstream.SubjectHeader), g.prefix)
		if op := m.Header.Get("KV-Operation"); ok && op != "DEL" && op != "PURGE" {
			b.found[k] = m.Data
		}
		g.mu.Unlock()
		return
	}
	g.mu.Unlock()
	switch status {
	case "404": // none of the keys exists
		g.finish(b, nil)
	case "204": // the end marker
		if np := m.Header.Get("Nats-Num-Pending"); np != "" && np != "0" {
			// Cut short (the server's byte limit): the keys not returned
			// may exist, so they are read again.
			g.retryMissing(b)
			return
		}
		g.finish(b, nil)
	default:
		g.finish(b, fmt.Errorf("natsjobs: batched read: status %s %s", status, m.Header.Get("Description")))
	}
}

// retryMissing ends b, resolving the reads it found and putting the
// others back in front of the pending reads.
func (g *batchGetter) retryMissing(b *readBatch) {
	g.mu.Lock()
	if g.inflight != b {
		g.mu.Unlock()
		return
	}
	var again, got []*batchRead
	for _, r := range b.reads {
		if _, ok := b.found[r.key]; ok {
			got = append(got, r)
		} else {
			again = append(again, r)
		}
	}
	g.pending = append(again, g.pending...)
	b.reads = got
	g.mu.Unlock()
	g.finish(b, nil)
}

// finish ends batch b (if it is still the one in flight) with err, or with
// what its reply found, and sends the next batch.
func (g *batchGetter) finish(b *readBatch, err error) {
	g.mu.Lock()
	if g.inflight != b {
		g.mu.Unlock()
		return
	}
	g.inflight = nil
	next := g.startLocked()
	g.mu.Unlock()
	b.timer.Stop()
	for _, r := range b.reads {
		if err != nil {
			r.err = err
		} else {
			r.val, r.found = b.found[r.key]
		}
		close(r.done)
	}
	if next != nil {
		g.send(next)
	}
}

// close unsubscribes and fails the reads still waiting.
func (g *batchGetter) close() {
	if g == nil {
		return
	}
	_ = g.sub.Unsubscribe()
	g.mu.Lock()
	g.closed = true
	b := g.inflight
	pending := g.pending
	g.pending = nil
	g.mu.Unlock()
	if b != nil {
		g.finish(b, errGetterClosed)
	}
	for _, r := range pending {
		r.err = errGetterClosed
		close(r.done)
	}
}
