package boltledger_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/boltledger"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"
)

// openTimeout is the lock timeout of the damaged-file tests: short, so a
// file left locked by a failed Open shows up as ErrLocked quickly.
const openTimeout = 100 * time.Millisecond

// goodLedgerFile is a real boltledger file, closed, and what its meta
// page says about it.
type goodLedgerFile struct {
	data     []byte
	pageSize int
	used     int    // bytes up to the high-water mark: the pages in use
	freelist uint64 // page id of the freelist
}

// goodFile caches the good file: writing it costs a few fsyncs, and every
// test reads the same bytes.
var goodFile struct {
	sync.Mutex
	g *goodLedgerFile
}

// makeGoodFile returns a ledger file with a few hundred changes, written
// (once per test binary) in dir, and its layout as bbolt reports it.
// Callers must not modify its data.
func makeGoodFile(t *testing.T, dir string) goodLedgerFile {
	t.Helper()
	goodFile.Lock()
	defer goodFile.Unlock()
	if goodFile.g == nil {
		g := buildGoodFile(t, dir)
		goodFile.g = &g
	}
	return *goodFile.g
}

// buildGoodFile writes the good file in dir, appending from several
// goroutines so that group commits keep the fsyncs few, and reads its
// layout back through bbolt itself.
func buildGoodFile(t *testing.T, dir string) goodLedgerFile {
	t.Helper()
	path := filepath.Join(dir, "good.db")
	db, err := boltledger.Open(path)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for _, id := range []string{"a", "b"} {
		l, err := db.Ledger(id) // db.Close closes it
		require.NoError(t, err)
		for w := range 10 {
			wg.Go(func() {
				for i := range 15 {
					n := w*15 + i
					_, err := l.Append(context.Background(), qpool.Mutation{Key: fmt.Sprintf("k%d", n%30), Value: map[string]any{"i": float64(n), "pad": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}})
					assert.NoError(t, err) // assert: not on the test's goroutine
				}
			})
		}
	}
	wg.Wait()
	require.NoError(t, db.Close())

	var g goodLedgerFile
	b, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	require.NoError(t, err)
	g.pageSize = b.Info().PageSize
	require.NoError(t, b.View(func(tx *bbolt.Tx) error {
		g.used = int(tx.Size())
		return nil
	}))
	require.NoError(t, b.Close())
	g.data, err = os.ReadFile(path)
	require.NoError(t, err)
	g.freelist = freelistPage(g.data, g.pageSize)
	require.Greater(t, g.used, 4*g.pageSize, "the good file should span several pages")
	require.Less(t, g.freelist, uint64(g.used/g.pageSize))
	return g
}

// freelistPage returns the freelist page that the current meta page of
// the file data names (^0 for none). The current meta is the one with the
// higher transaction ID; its freelist field sits after the page header
// (16 bytes) and magic, version, page size, flags and the root bucket (32
// bytes), its transaction ID 16 bytes further.
func freelistPage(data []byte, pageSize int) uint64 {
	meta := func(i int) (txid, freelist uint64) {
		m := data[i*pageSize+16:]
		return binary.NativeEndian.Uint64(m[48:]), binary.NativeEndian.Uint64(m[32:])
	}
	tx0, fl0 := meta(0)
	tx1, fl1 := meta(1)
	if tx1 > tx0 {
		return fl1
	}
	return fl0
}

// fillRandom fills b from rng, eight bytes a draw.
func fillRandom(rng *rand.Rand, b []byte) []byte {
	for i := 0; i < len(b); i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], rng.Uint64())
		copy(b[i:], w[:])
	}
	return b
}

// cut returns the good file's first n bytes.
func (g goodLedgerFile) cut(n int) []byte { return append([]byte(nil), g.data[:n]...) }

// with returns a copy of the good file with len(b) bytes at off replaced.
func (g goodLedgerFile) with(off int, b []byte) []byte {
	d := append([]byte(nil), g.data...)
	copy(d[off:], b)
	return d
}

// openFDs counts this process's open file descriptors (Linux only; -1
// elsewhere).
func openFDs(t *testing.T) int {
	t.Helper()
	if runtime.GOOS != "linux" {
		return -1
	}
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(fds)
}

// mappedUnder counts this process's memory maps of files under dir
// (Linux only; 0 elsewhere): a map that a failed Open left behind stays
// in /proc/self/maps after its descriptor is closed.
func mappedUnder(t *testing.T, dir string) int {
	t.Helper()
	if runtime.GOOS != "linux" {
		return 0
	}
	maps, err := os.ReadFile("/proc/self/maps")
	require.NoError(t, err)
	return strings.Count(string(maps), dir+string(filepath.Separator))
}

// requireUnlocked checks that no open file description holds a lock on
// path (see tryLock).
func requireUnlocked(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, tryLock(f), "%s is still locked after a failed Open", path)
}

// requireDamaged opens path, which holds a damaged file, and checks that
// Open fails with ErrCorrupt naming the path, that the failed Open let go
// of the file (a second Open fails the same way, not with ErrLocked, and
// nothing holds a lock on it), and that once good bytes are written over
// it in place (same inode, so a leaked lock would still hold), Open
// succeeds.
func requireDamaged(t *testing.T, path string, good []byte, opts ...boltledger.Option) {
	t.Helper()
	opts = append(opts, boltledger.WithLockTimeout(openTimeout))
	for attempt := range 2 {
		db, err := boltledger.Open(path, opts...)
		if db != nil {
			_ = db.Close()
		}
		require.ErrorIs(t, err, boltledger.ErrCorrupt, "attempt %d", attempt)
		require.NotErrorIs(t, err, boltledger.ErrLocked, "attempt %d", attempt)
		require.Contains(t, err.Error(), path)
	}
	requireUnlocked(t, path)
	if good == nil {
		return
	}
	require.NoError(t, os.WriteFile(path, good, 0o600))
	db, err := boltledger.Open(path, opts...)
	require.NoError(t, err, "Open of the repaired file")
	require.NoError(t, db.Close())
}

// TestOpenDamagedFileReleasesIt opens damaged files of every size that
// matters (shorter than a page, one page to just short of two, two pages,
// a good file cut at each page boundary below its high-water mark), files
// of random bytes and files whose meta or freelist pages are overwritten,
// each writable and WithReadOnly. Every one must fail with ErrCorrupt,
// never a panic, a fault or an error matching no sentinel; the failed Open
// must release the file (descriptor, lock and mapping): a second Open gets
// ErrCorrupt again, not ErrLocked, no lock is left on the file, no
// descriptor is left open, and good bytes written over the same file open.
func TestOpenDamagedFileReleasesIt(t *testing.T) {
	dir := t.TempDir()
	g := makeGoodFile(t, dir)
	rng := rand.New(rand.NewPCG(13, 9))
	random := func(n int) []byte { return fillRandom(rng, make([]byte, n)) }
	type damaged struct {
		name string
		data []byte
	}
	var cases []damaged
	for _, n := range []int{1, 100, 1023, 1024, 2048, 4095, 4096, 5000, 8191, 8192, 12288, 16384, 1 << 16} {
		cases = append(cases, damaged{fmt.Sprintf("Random%d", n), random(n)})
		cases = append(cases, damaged{fmt.Sprintf("Zeros%d", n), make([]byte, n)})
		if n < g.used {
			cases = append(cases, damaged{fmt.Sprintf("GoodCutAt%d", n), g.cut(n)})
		}
	}
	for n := g.pageSize; n < g.used; n += g.pageSize {
		cases = append(cases, damaged{fmt.Sprintf("GoodCutAtPage%d", n/g.pageSize), g.cut(n)})
		cases = append(cases, damaged{fmt.Sprintf("GoodCutAtPage%dPlus1", n/g.pageSize), g.cut(n + 1)})
	}
	cases = append(cases,
		damaged{"GoodCutOneShort", g.cut(g.used - 1)},
		damaged{"BothMetasZeroed", g.with(0, make([]byte, 2*g.pageSize))},
		damaged{"BothMetasRandom", g.with(0, random(2*g.pageSize))},
		damaged{"FreelistZeroed", g.with(int(g.freelist)*g.pageSize, make([]byte, g.pageSize))},
		damaged{"FreelistRandom", g.with(int(g.freelist)*g.pageSize, random(g.pageSize))},
		damaged{"FreelistCountHuge", g.with(int(g.freelist)*g.pageSize+10, []byte{0xfe, 0xff})},
	)

	before := openFDs(t)
	for _, c := range cases {
		for _, ro := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/readOnly=%t", c.name, ro), func(t *testing.T) {
				path := writeFile(t, dir, fmt.Sprintf("%s-%t.db", c.name, ro), c.data)
				var opts []boltledger.Option
				if ro {
					opts = append(opts, boltledger.WithReadOnly())
				}
				requireDamaged(t, path, g.data, opts...)
			})
		}
	}
	require.Equal(t, before, openFDs(t), "descriptors leaked by failed Opens")
	require.Zero(t, mappedUnder(t, dir), "maps left by failed Opens")
}

// TestOpenGoodFileBoundaries is the control for the damaged-file tests:
// the good file cut exactly at its high-water mark holds every page in
// use and opens and reads in full; an empty file opens as a new one; with
// one meta page destroyed bbolt falls back to the other and the file
// opens (or, if the older state's pages were reused, fails with
// ErrCorrupt and releases the file).
func TestOpenGoodFileBoundaries(t *testing.T) {
	dir := t.TempDir()
	g := makeGoodFile(t, dir)
	before := openFDs(t)

	path := writeFile(t, dir, "cut-at-mark.db", g.cut(g.used))
	require.NoError(t, readEverything(t, path))

	empty := writeFile(t, dir, "empty.db", nil)
	db, err := boltledger.Open(empty)
	require.NoError(t, err, "an empty file is a new one")
	require.NoError(t, db.Close())
	require.Greater(t, fileSize(t, empty), int64(0), "Open wrote the new file's layout")

	// WithReadOnly cannot initialise an empty file: ErrCorrupt, released.
	requireDamaged(t, writeFile(t, dir, "empty-ro.db", nil), nil, boltledger.WithReadOnly())

	for i := range 2 {
		path := writeFile(t, dir, fmt.Sprintf("meta%d-zeroed.db", i), g.with(i*g.pageSize, make([]byte, g.pageSize)))
		db, err := boltledger.Open(path, boltledger.WithLockTimeout(openTimeout))
		if err != nil {
			require.ErrorIs(t, err, boltledger.ErrCorrupt)
			requireUnlocked(t, path)
			continue
		}
		require.NoError(t, db.Close())
	}
	require.Equal(t, before, openFDs(t), "descriptors leaked")
	require.Zero(t, mappedUnder(t, dir), "maps left by failed Opens")
}

// TestOpenNotAFile opens a directory and a path under a regular file: a
// clear error wrapping a sentinel (ErrNotFile for the directory, the
// file system's own for the rest), never an error matching none.
func TestOpenNotAFile(t *testing.T) {
	dir := t.TempDir()
	for _, ro := range []bool{false, true} {
		var opts []boltledger.Option
		if ro {
			opts = append(opts, boltledger.WithReadOnly())
		}
		db, err := boltledger.Open(dir, opts...)
		if db != nil {
			_ = db.Close()
		}
		require.ErrorIs(t, err, boltledger.ErrNotFile, "readOnly=%t", ro)
		require.Contains(t, err.Error(), dir)
	}
	db, err := boltledger.Open(filepath.Join(dir, "absent.db"), boltledger.WithReadOnly())
	if db != nil {
		_ = db.Close()
	}
	require.ErrorIs(t, err, os.ErrNotExist, "WithReadOnly does not create the file")
}

// TestOpenRandomDamage is a fuzz-like loop from a fixed seed: random bytes
// of random sizes, the good file cut short at random, and the good file
// with a few random bytes written over the start (header, meta, free page
// IDs) of one or both meta pages or of the freelist page. Files
// known to be damaged (random bytes, a cut below the high-water mark) must
// give ErrCorrupt; an overwrite may leave a readable file (bbolt falls
// back to the other meta page), so there the Open may succeed, but a
// failure must be ErrCorrupt. Every failed Open must release the file.
func TestOpenRandomDamage(t *testing.T) {
	dir := t.TempDir()
	g := makeGoodFile(t, dir)
	rng := rand.New(rand.NewPCG(10, 4096))
	before := openFDs(t)
	var opened, failed, overwritten int
	for i := range 300 {
		var data []byte
		mustFail := true
		switch i % 3 {
		case 0:
			data = fillRandom(rng, make([]byte, 1+rng.IntN(5*g.pageSize)))
		case 1:
			data = g.cut(1 + rng.IntN(g.used-1))
		case 2:
			// Overwrite 1-16 bytes among the first 128 of a meta page
			// (both, half the time) or of the freelist page: the page
			// header, the meta or the free page IDs.
			pages := [][]int{{0}, {1}, {0, 1}, {0, 1}, {int(g.freelist)}, {int(g.freelist)}}
			data = append([]byte(nil), g.data...)
			for _, p := range pages[rng.IntN(len(pages))] {
				fillRandom(rng, data[p*g.pageSize+rng.IntN(128-16):][:1+rng.IntN(16)])
			}
			mustFail = false
		}
		path := writeFile(t, dir, fmt.Sprintf("random-%d.db", i), data)
		var opts []boltledger.Option
		if rng.IntN(2) == 0 {
			opts = append(opts, boltledger.WithReadOnly())
		}
		if mustFail {
			requireDamaged(t, path, nil, opts...)
			failed++
			continue
		}
		db, err := boltledger.Open(path, append(opts, boltledger.WithLockTimeout(openTimeout))...)
		if err == nil {
			require.NoError(t, db.Close())
			opened++
			continue
		}
		require.ErrorIs(t, err, boltledger.ErrCorrupt, "file %d", i)
		requireUnlocked(t, path)
		overwritten++
	}
	t.Logf("%d damaged files failed with ErrCorrupt; of the overwritten ones %d did too and %d still opened", failed, overwritten, opened)
	require.NotZero(t, overwritten, "no overwrite damaged a file: the overwrites tested nothing")
	require.Equal(t, before, openFDs(t), "descriptors leaked by failed Opens")
	require.Zero(t, mappedUnder(t, dir), "maps left by failed Opens")
}

// makeUnsyncedFile returns a copy of the good file rewritten by bbolt with
// NoFreelistSync, so that its meta page names no freelist, and the page
// IDs of the branch page at the root of ledger "a"'s log and of that
// branch's first leaf. A writable Open of such a file makes bbolt rebuild
// the freelist by walking every page, in a goroutine of its own.
func makeUnsyncedFile(t *testing.T, dir string, g goodLedgerFile) (data []byte, branch, leaf int) {
	t.Helper()
	path := writeFile(t, dir, "unsynced-source.db", g.data)
	b, err := bbolt.Open(path, 0o600, &bbolt.Options{NoFreelistSync: true})
	require.NoError(t, err)
	require.NoError(t, b.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("qpool.boltledger")).Put([]byte("probe"), []byte("x"))
	}))
	require.NoError(t, b.View(func(tx *bbolt.Tx) error {
		branch = int(tx.Bucket([]byte("l/a")).Root())
		info, err := tx.Page(branch)
		require.NoError(t, err)
		require.Equal(t, "branch", info.Type, "ledger a's log should span several pages")
		return nil
	}))
	require.NoError(t, b.Close())
	data, err = os.ReadFile(path)
	require.NoError(t, err)
	// The first element of a branch page (after the 16-byte header) is
	// pos u32, ksize u32, child page u64.
	leaf = int(binary.NativeEndian.Uint64(data[branch*g.pageSize+16+8:]))
	return data, branch, leaf
}

// TestOpenDamagedUnsyncedFile opens, writable, files without a stored
// freelist whose pages are damaged where bbolt's freelist rebuild reads
// them: a branch whose child lies past the file's pages or is reached
// twice, a leaf whose key lies past its page, a page zeroed. Without a
// check before bbolt.Open, the first and third fault in bbolt's walking
// goroutine, which kills the process, and the others panic inside
// bbolt.Open. Each must fail with ErrCorrupt and release the file; the
// undamaged file opens, and bbolt stores its freelist.
func TestOpenDamagedUnsyncedFile(t *testing.T) {
	dir := t.TempDir()
	g := makeGoodFile(t, dir)
	data, branch, leaf := makeUnsyncedFile(t, dir, g)
	with := func(off int, b []byte) []byte {
		d := append([]byte(nil), data...)
		copy(d[off:], b)
		return d
	}
	u64 := func(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }
	u32 := func(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
	elem := func(page, i int) int { return page*g.pageSize + 16 + 16*i }
	before := openFDs(t)

	good := writeFile(t, dir, "unsynced-good.db", data)
	require.Equal(t, ^uint64(0), freelistPage(data, g.pageSize), "the file should have no stored freelist")
	require.NoError(t, readEverything(t, good), "the undamaged file without a freelist opens")
	rewritten, err := os.ReadFile(good)
	require.NoError(t, err)
	require.Less(t, freelistPage(rewritten, g.pageSize), uint64(len(rewritten)/g.pageSize), "bbolt stored the rebuilt freelist")

	cases := []struct {
		name string
		data []byte
	}{
		{"BranchChildPastEnd", with(elem(branch, 0)+8, u64(uint64(g.used/g.pageSize)+5))},
		{"BranchChildFarPastEnd", with(elem(branch, 0)+8, u64(1<<40))},
		{"BranchChildTwice", with(elem(branch, 1)+8, u64(uint64(leaf)))},
		{"LeafKeyPastPage", with(elem(leaf, 0)+4, u32(0x7ffffff0))},
		{"LeafKeysOutOfOrder", with(elem(leaf, 1)+4, u32(binary.NativeEndian.Uint32(data[elem(leaf, 0)+4:])+16))},
		{"LeafZeroed", with(leaf*g.pageSize, make([]byte, g.pageSize))},
		{"BranchZeroed", with(branch*g.pageSize, make([]byte, g.pageSize))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, dir, c.name+".db", c.data)
			requireDamaged(t, path, data)
		})
	}
	require.Equal(t, before, openFDs(t), "descriptors leaked by failed Opens")
	require.Zero(t, mappedUnder(t, dir), "maps left by failed Opens")
}
