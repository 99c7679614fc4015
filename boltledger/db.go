package boltledger

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qpool/qpool"
	bbolt "go.etcd.io/bbolt"
)

// DB is one bbolt file holding the ledgers of many entanglements, and the
// group committer that writes to it. Open one DB per file per process,
// share it among entanglements, and Close it after every entanglement on
// it. All methods are safe for concurrent use. The zero value is not
// usable; call [Open].
type DB struct {
	bolt *bbolt.DB
	path string
	cfg  config

	mu      sync.Mutex // guards ledgers and closed
	ledgers map[string]*Ledger
	closed  bool

	pendMu      sync.Mutex // guards pending, outstanding and stopping
	pending     []*request
	outstanding int           // Appends submitted and not yet answered, queued or in a commit
	lastBatch   int           // changes in the last commit
	active      int           // writers at the end of the last commit: its batch and the queue
	linger      time.Duration // how long gather may wait for them
	stopping    bool
	wake        chan struct{}  // size 1: one signal stands for any number of submits
	quit        chan struct{}  // closed by Close: drain and end the committer
	wg          sync.WaitGroup // the committer
	fast        sync.WaitGroup // commits on the fast path; Add only under pendMu while not stopping

	// commitMu is held while a batch is written, by the committer or by a
	// caller on the fast path: it keeps one commit at a time, so that a
	// batch is never split between two transactions racing for bbolt's
	// writer lock.
	commitMu sync.Mutex

	// misses and skips belong to the committer goroutine (gather): how
	// many waits in a row the answered writers did not repay, and how
	// many gathers to skip before waiting again.
	misses, skips int

	commits atomic.Uint64 // transactions the committer wrote
	changes atomic.Uint64 // changes they held
}

// Stats counts the group committer's work since Open.
type Stats struct {
	// Commits is the number of write transactions (each one fsync) the
	// committer made; Changes is the number of changes they recorded.
	// Changes/Commits is the mean group size.
	Commits, Changes uint64
}

// Stats returns the committer's counts so far.
func (db *DB) Stats() Stats {
	return Stats{Commits: db.commits.Load(), Changes: db.changes.Load()}
}

// Open opens (creating it if absent) the file at path. An empty file is
// taken as a new one and initialised, unless [WithReadOnly], which cannot
// write it. Open fails with:
//   - [ErrLocked] when another process holds the file past the lock
//     timeout;
//   - [ErrCorrupt] for a damaged file or one that is not a bbolt file:
//     shorter than its two meta pages (any file of 1 to 8,191 bytes with
//     4 KiB pages), no valid meta page, fewer pages than its meta page
//     claims (a file cut short), a damaged freelist page, a damaged page
//     tree where Open reads it (the root bucket; every page when the file
//     has no stored freelist and is opened for writing), an empty file
//     [WithReadOnly]. Open checks the meta and freelist pages and the
//     file's size, under the lock, before bbolt maps the file, so bbolt
//     does not fault on them; bbolt's own errors, panics and faults on a
//     damaged file are wrapped in ErrCorrupt too;
//   - [ErrForeign] for a bbolt file that this package did not write (a
//     damaged root page can look like one);
//   - [ErrNotFile] when path names a directory or anything else but a
//     regular file;
//   - the file system's error otherwise, an *[io/fs.PathError], so that
//     errors.Is(err, [io/fs.ErrNotExist]) ([WithReadOnly] on an absent file)
//     and errors.Is(err, [io/fs.ErrPermission]) work.
//
// Every error names path. A failed Open releases the file: no descriptor,
// lock or memory map of it stays, so that this process or another can
// open it again, for example once it has been restored. (Should bbolt
// still panic inside its Open, which the checks above are there to
// prevent, the descriptor and lock are released and only the map, which
// bbolt alone knows, stays until the process exits.)
//
// Open starts one goroutine, the group committer, which [DB.Close] ends.
func Open(path string, opts ...Option) (db *DB, err error) {
	cfg := newConfig(opts)
	defer func() {
		if err != nil {
			err = fmt.Errorf("boltledger: open %s: %w", path, err)
		}
	}()
	b, err := openBolt(path, cfg)
	if err != nil {
		return nil, err
	}
	if err := initLayout(b, cfg.readOnly); err != nil {
		_ = b.Close() // the layout error is the one to report
		return nil, err
	}
	db = &DB{
		bolt:    b,
		path:    path,
		cfg:     cfg,
		ledgers: make(map[string]*Ledger),
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
	}
	// Owner: db. Ends when Close closes quit, after draining what was
	// submitted; Close waits for it.
	db.wg.Go(db.commitLoop)
	return db, nil
}

// openBolt opens the bbolt file. Its OpenFile hook (openChecked) opens,
// locks and checks the file before bbolt maps it, so that bbolt.Open does
// not fault on a damaged file; a damaged file fails there, and bbolt.Open
// closes what it opened on every error it returns.
//
// Invariant: when openBolt fails, the file is released: no descriptor,
// lock or map of it is left. bbolt.Open keeps it on its error returns;
// openChecked closes its own descriptor on its errors. Only a panic or
// fault inside bbolt.Open (which checkFile exists to prevent) escapes
// bbolt's cleanup: then the deferred release drops the lock and closes
// the descriptor bbolt was given, and only the map of the file, address
// space without the lock, stays until the process exits, as nothing
// outside bbolt knows where it is.
func openBolt(path string, cfg config) (b *bbolt.DB, err error) {
	var file *os.File // what the hook gave bbolt; owned by bbolt unless it panics
	defer shield(&err, func() {
		if file != nil {
			unlockFile(file)
			_ = file.Close() // the fault is the error to report
		}
	})()
	b, err = bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:  cfg.lockTimeout,
		ReadOnly: cfg.readOnly,
		MaxSize:  cfg.maxSize,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := openChecked(name, flag, perm, cfg)
			file = f
			return f, err
		},
	})
	return b, mapError(err)
}

// openChecked opens the file as bbolt would, takes the lock bbolt takes,
// and checks the file (checkFile) under it, so that no writer in another
// process changes it while it is read. On any error it closes the file.
//
// Check-then-act: what checkFile accepted is what bbolt maps, because the
// lock taken before the check stays on the descriptor that bbolt is given
// (bbolt's own flock on it succeeds at once) until the DB closes. Only a
// writer that ignores the lock, or a platform where lockFile cannot lock
// (lock_other.go: there bbolt locks after the check), could change the
// file in between.
// A path that names a directory, or anything else but a regular file,
// fails with ErrNotFile; other errors of the file system are returned as
// they are (an *fs.PathError, so errors.Is(err, fs.ErrNotExist) works).
func openChecked(name string, flag int, perm os.FileMode, cfg config) (*os.File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		if fi, serr := os.Stat(name); serr == nil && !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%w: %s: %w", ErrNotFile, fi.Mode().Type(), err)
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%w: %s", ErrNotFile, fi.Mode().Type())
	}
	if err == nil {
		err = lockFile(f, !cfg.readOnly, cfg.lockTimeout)
	}
	if err == nil {
		err = checkFile(f, cfg.readOnly)
	}
	if err != nil {
		unlockFile(f)
		_ = f.Close() // err is the error to report
		return nil, err
	}
	return f, nil
}

// Path returns the file's path.
func (db *DB) Path() string { return db.path }

// Ledger returns the ledger of the entanglement id, with its stored state
// loaded into memory (its history stays on disk). Pass it to
// [qpool.OpenEntanglement] with [qpool.WithLedger]; the entanglement then
// owns it. One ledger per ID may be open at a time ([ErrInUse]); closing
// it frees the ID. It fails with [ErrInvalidID] for an empty ID or one
// longer than bbolt's key limit, [qpool.ErrClosed] after Close, and
// [ErrCorrupt] when the stored records do not decode.
func (db *DB) Ledger(id string) (*Ledger, error) {
	if id == "" || len(id) > bbolt.MaxKeySize-prefixLen {
		return nil, fmt.Errorf("boltledger: ledger of %d bytes: %w", len(id), ErrInvalidID)
	}
	if err := db.reserve(id); err != nil {
		return nil, err
	}
	l, err := db.load(id)
	db.mu.Lock()
	defer db.mu.Unlock()
	if err != nil || db.closed {
		delete(db.ledgers, id)
		if err == nil {
			err = qpool.ErrClosed
		}
		return nil, fmt.Errorf("boltledger: ledger %q: %w", id, err)
	}
	db.ledgers[id] = l
	return l, nil
}

// reserve marks id as being opened, so that two calls cannot both load it.
func (db *DB) reserve(id string) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return fmt.Errorf("boltledger: ledger %q: %w", id, qpool.ErrClosed)
	}
	if _, ok := db.ledgers[id]; ok {
		return fmt.Errorf("boltledger: ledger %q: %w", id, ErrInUse)
	}
	db.ledgers[id] = nil
	return nil
}

// forget frees id after its ledger closed.
func (db *DB) forget(l *Ledger) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.ledgers[l.id] == l {
		delete(db.ledgers, l.id)
	}
}

// IDs returns the IDs of the entanglements stored in the file, in byte
// order.
func (db *DB) IDs() (ids []string, err error) {
	defer shield(&err)()
	err = db.bolt.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			if hasPrefix(name, metaPrefix) {
				ids = append(ids, string(name[prefixLen:]))
			}
			return nil
		})
	})
	return ids, mapError(err)
}

// Verify runs bbolt's consistency check over the whole file: every page
// reachable once, no page both free and in use. It reads the whole file,
// so it is for tests and tools, not for every open.
func (db *DB) Verify() (err error) {
	defer shield(&err)()
	err = db.bolt.View(func(tx *bbolt.Tx) error {
		var errs []error
		for e := range tx.Check() {
			errs = append(errs, e)
		}
		if len(errs) > 0 {
			return fmt.Errorf("%w: %d consistency errors, first: %w", ErrCorrupt, len(errs), errs[0])
		}
		return nil
	})
	return mapError(err)
}

// Close fails later calls with [qpool.ErrClosed], commits the changes
// already submitted, ends the committer, closes every ledger still open
// and then the file. It is idempotent.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return nil
	}
	db.closed = true
	open := make([]*Ledger, 0, len(db.ledgers))
	for _, l := range db.ledgers {
		if l != nil {
			open = append(open, l)
		}
	}
	db.mu.Unlock()
	db.pendMu.Lock()
	db.stopping = true
	db.pendMu.Unlock()
	close(db.quit)
	db.wg.Wait()
	db.fast.Wait()
	for _, l := range open {
		_ = l.Close() // a ledger's Close cannot fail
	}
	return mapError(db.bolt.Close())
}
