package natsjobs

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// kvBucket is a KV bucket whose reads see every write the server has
// acknowledged, on a single server and on a cluster alike.
//
// Invariant (read after acknowledged write): a write to a bucket (a
// create, a put) is acknowledged once the stream's leader has stored it
// and a quorum of replicas holds it; any read issued after that sees it.
// Every protocol of natsjobs that reads a bucket needs this: a dependency's
// outcome read by the linker after its link, the marker and links read by
// the finisher after its outcome (store.release, store.dependents), a
// job's claim read by a releaser that saw its link (tryStart), an outcome
// read by a future or Result registered after the feed passed it
// (Handle.Future, Client.Result), a claim read by Cancel or Status in
// another process after Submit returned. A KV Get is a direct get, which
// any replica of the stream may answer, and a follower answers from what
// it has applied, which may lag the leader's acknowledgement
// (TestCluster/ReadAfterWrite saw about one read in a hundred miss a write
// just acknowledged). So with more than one replica, Get asks the stream's
// leader through the JetStream API (STREAM.MSG.GET), which only the leader
// answers; and keys, with any replicas, lists the leader's subjects
// (STREAM.INFO with a subject filter) rather than reading an ordered
// consumer, which the server may place on a follower. With one replica
// the one server is the leader, and direct gets are kept: BenchmarkReads
// measured a leader's get at about twice a direct get's time on one
// server (they skip the JetStream API's queue). Who may break it:
// anyone reading a bucket some other way (kv.Keys, a watcher, a direct
// get on the embedded KeyValue) where correctness needs the latest value;
// the feeds only wait for what comes, and are fine.
//
// The replica count is the stream's, read when the bucket is opened: a
// bucket whose replicas are changed later (with the nats tool) is read the
// old way until the processes using it restart (docs/jobs.md).
type kvBucket struct {
	jetstream.KeyValue
	name   string           // the bucket's name
	stream jetstream.Stream // its stream
	nc     *nats.Conn
	pre    string // the subject prefix of its keys: "$KV.<name>."
	// getSubj is the JetStream API subject of the leader's message get;
	// viaLeader says to use it (and the leader's subjects for keys): the
	// bucket has more than one replica.
	getSubj   string
	viaLeader bool
	// ttl is the bucket's TTL (its stream's MaxAge; 0: none), read when
	// the bucket is opened: whoever made the bucket set it, whatever this
	// process's WithRetention says (Worker.otherClaim).
	ttl time.Duration
}

func newKVBucket(js jetstream.JetStream, kv jetstream.KeyValue, st jetstream.Stream) *kvBucket {
	cfg := st.CachedInfo().Config
	return &kvBucket{KeyValue: kv, name: kv.Bucket(), stream: st, nc: js.Conn(), pre: "$KV." + kv.Bucket() + ".",
		getSubj: apiPrefix(js) + "STREAM.MSG.GET." + cfg.Name, viaLeader: cfg.Replicas > 1, ttl: cfg.MaxAge}
}

// apiPrefix is the JetStream API prefix js sends its requests to.
func apiPrefix(js jetstream.JetStream) string {
	o := js.Options()
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	}
	return jetstream.DefaultAPIPrefix
}

// Get returns the latest value of key, as KeyValue.Get does, but from the
// stream's leader when the bucket has replicas (see kvBucket).
func (b *kvBucket) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if !b.viaLeader {
		return b.KeyValue.Get(ctx, key)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = opCtx(ctx)
		defer cancel()
	}
	req, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{b.pre + key})
	if err != nil {
		return nil, err
	}
	m, err := b.nc.RequestWithContext(ctx, b.getSubj, req)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Seq    uint64    `json:"seq"`
			Header []byte    `json:"hdrs"`
			Data   []byte    `json:"data"`
			Time   time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return nil, fmt.Errorf("natsjobs: get %s from bucket %s: %w", key, b.name, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return nil, jetstream.ErrKeyNotFound
		}
		return nil, resp.Error
	}
	if resp.Message == nil {
		return nil, fmt.Errorf("natsjobs: get %s from bucket %s: %w", key, b.name, jetstream.ErrInvalidJetStreamResponse)
	}
	if len(resp.Message.Header) > 0 {
		// A delete, purge or expiry marker: the key has no value, as
		// KeyValue.Get reports it.
		h, err := nats.DecodeHeadersMsg(resp.Message.Header)
		if err != nil {
			return nil, fmt.Errorf("natsjobs: get %s from bucket %s: %w", key, b.name, err)
		}
		if h.Get("KV-Operation") != "" || h.Get(jetstream.MarkerReasonHeader) != "" {
			return nil, jetstream.ErrKeyNotFound
		}
	}
	return &kvEntry{bucket: b.name, key: key, value: resp.Message.Data, rev: resp.Message.Seq, created: resp.Message.Time}, nil
}

// keys lists the keys that match filter (a key with wildcards), from the
// subjects of the stream, which its leader reports (see kvBucket). A key
// whose latest value is a delete marker is listed too (natsjobs deletes no
// keys it lists). This is cheaper than ListKeysFiltered on one server as
// well (an API request, not an ordered consumer created, read and
// deleted: BenchmarkReads measured about 120µs against 470µs), so it
// serves every replica count.
func (b *kvBucket) keys(ctx context.Context, filter string) ([]string, error) {
	info, err := b.stream.Info(ctx, jetstream.WithSubjectFilter(b.pre+filter))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		if k, ok := strings.CutPrefix(subj, b.pre); ok {
			out = append(out, k)
		}
	}
	return out, nil
}

// kvEntry is a value read from a stream's leader.
type kvEntry struct {
	bucket, key string
	value       []byte
	rev         uint64
	created     time.Time
}

func (e *kvEntry) Bucket() string                  { return e.bucket }
func (e *kvEntry) Key() string                     { return e.key }
func (e *kvEntry) Value() []byte                   { return e.value }
func (e *kvEntry) Revision() uint64                { return e.rev }
func (e *kvEntry) Created() time.Time              { return e.created }
func (e *kvEntry) Delta() uint64                   { return 0 }
func (e *kvEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }
