package boltledger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt's on-disk format, as far as checkFile reads it (go.etcd.io/bbolt
// internal/common). Pages and metas are in the machine's byte order.
const (
	pageHeaderSize = 16         // id u64, flags u16, count u16, overflow u32
	metaSize       = 64         // the meta that follows a meta page's header
	metaSumLen     = 56         // the bytes its checksum covers
	boltMagic      = 0xED0CDAED // meta.magic
	boltVersion    = 2          // meta.version
	freelistFlag   = 0x10       // page flags of a freelist page
	noFreelist     = ^uint64(0) // meta.freelist when the freelist is not stored
)

// boltMeta is the part of a meta page checkFile uses.
type boltMeta struct {
	pageSize uint64
	root     uint64 // page of the root bucket
	freelist uint64 // page of the freelist, or noFreelist
	pgid     uint64 // high-water mark: pages 0 to pgid-1 are in use
	txid     uint64
}

// parseMeta decodes the meta of the page in buf and reports whether it
// is valid as bbolt's Meta.Validate judges it: magic, version, checksum.
func parseMeta(buf []byte) (m boltMeta, ok bool) {
	if len(buf) < pageHeaderSize+metaSize {
		return m, false
	}
	b := buf[pageHeaderSize : pageHeaderSize+metaSize]
	e := binary.NativeEndian
	h := fnv.New64a()
	_, _ = h.Write(b[:metaSumLen]) // a hash never fails
	if e.Uint32(b[0:]) != boltMagic || e.Uint32(b[4:]) != boltVersion || e.Uint64(b[56:]) != h.Sum64() {
		return m, false
	}
	return boltMeta{
		pageSize: uint64(e.Uint32(b[8:])),
		root:     e.Uint64(b[16:]),
		freelist: e.Uint64(b[32:]),
		pgid:     e.Uint64(b[40:]),
		txid:     e.Uint64(b[48:]),
	}, true
}

// corruptf returns an error wrapping ErrCorrupt.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// checkFile reads, through f and not through a memory map, everything
// bbolt.Open would otherwise read through its map and trust: the meta
// pages, the file's size against the pages they claim, and the freelist
// page. bbolt.Open validates the metas' checksums but then reads the
// freelist page, and later every page, through the map without a bound
// check: a file cut short faults (SIGBUS past its end, SIGSEGV past the
// map), and a damaged freelist page panics, inside bbolt.Open, which
// then cannot release the file. For a file without a stored freelist,
// opened for writing, bbolt.Open reads every page of the tree, and
// checkTree reads them first. After checkFile accepts a file, bbolt.Open
// reads only what checkFile read and found sound, so it cannot fault.
//
// The caller holds the file's lock, so no other process writes while it
// reads. An empty file is a new one when writable (bbolt writes its first
// pages) and ErrCorrupt when read-only, since nothing can initialise it.
func checkFile(f *os.File, readOnly bool) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size == 0 {
		if readOnly {
			return corruptf("empty file, which a read-only open cannot initialise")
		}
		return nil
	}
	pageSize, err := filePageSize(f, size)
	if err != nil {
		return err
	}
	if pageSize < pageHeaderSize+metaSize || uint64(size)/pageSize < 2 {
		return corruptf("file of %d bytes cannot hold two meta pages of %d bytes", size, pageSize)
	}
	var metas [2]boltMeta
	var valid [2]bool
	for i := range metas {
		buf := make([]byte, pageHeaderSize+metaSize)
		if _, err := f.ReadAt(buf, int64(i)*int64(pageSize)); err != nil {
			return corruptf("reading meta page %d: %w", i, err)
		}
		metas[i], valid[i] = parseMeta(buf)
	}
	// Pick the meta bbolt's DB.meta picks: the valid one with the higher
	// transaction ID.
	var m boltMeta
	switch {
	case valid[0] && valid[1]:
		m = metas[0]
		if metas[1].txid > metas[0].txid {
			m = metas[1]
		}
	case valid[0]:
		m = metas[0]
	case valid[1]:
		m = metas[1]
	default:
		return corruptf("no valid meta page (bad magic, version or checksum)")
	}
	pages := uint64(size) / pageSize
	if m.pgid > pages {
		return corruptf("file of %d bytes holds %d pages of %d bytes, its meta page claims %d: the file is cut short", size, pages, pageSize, m.pgid)
	}
	if m.root < 2 || m.root >= m.pgid {
		return corruptf("root page %d outside the %d pages in use", m.root, m.pgid)
	}
	if m.freelist == noFreelist {
		if readOnly { // bbolt reads no page beyond the metas here
			return nil
		}
		return checkTree(f, m, pageSize)
	}
	return checkFreelist(f, m, pageSize)
}

// filePageSize finds the page size as bbolt's DB.getPageSize does, so that
// checkFile reads the pages bbolt will: from the first meta page if it is
// valid, else from the second one, looked for at each power of two from
// 1 KiB; else, if one of the two could be read, the OS page size.
func filePageSize(f *os.File, size int64) (uint64, error) {
	buf := make([]byte, 0x1000)
	canRead := false
	if n, err := f.ReadAt(buf, 0); err == nil && n == len(buf) {
		canRead = true
		if m, ok := parseMeta(buf); ok {
			return m.pageSize, nil
		}
	}
	for i := range 15 {
		pos := int64(1024) << i
		if pos >= size-1024 {
			break
		}
		n, err := f.ReadAt(buf, pos)
		if (err == nil && n == len(buf)) || (errors.Is(err, io.EOF) && int64(n) == size-pos) {
			canRead = true
			if m, ok := parseMeta(buf[:n]); ok {
				return m.pageSize, nil
			}
		}
	}
	if canRead {
		return uint64(os.Getpagesize()), nil
	}
	return 0, corruptf("file of %d bytes has no readable meta page", size)
}

// checkFreelist checks the freelist page m names: within the pages in use
// with its overflow, marked as a freelist, its count within the page, and
// every free page ID one that can be free (2 to m.pgid-1). bbolt.Open
// panics on a page not marked as a freelist and faults on a count that
// runs past the map; later writes would panic on an ID out of range.
func checkFreelist(f *os.File, m boltMeta, pageSize uint64) error {
	if m.freelist < 2 || m.freelist >= m.pgid || m.freelist == m.root {
		return corruptf("freelist page %d outside the %d pages in use or on the root page", m.freelist, m.pgid)
	}
	e := binary.NativeEndian
	off := int64(m.freelist * pageSize)
	hdr := make([]byte, pageHeaderSize+8)
	if _, err := f.ReadAt(hdr, off); err != nil {
		return corruptf("reading freelist page %d: %w", m.freelist, err)
	}
	id, flags, count, overflow := e.Uint64(hdr), e.Uint16(hdr[8:]), uint64(e.Uint16(hdr[10:])), uint64(e.Uint32(hdr[12:]))
	if id != m.freelist || flags != freelistFlag {
		return corruptf("page %d is not a freelist page (id %d, flags %#x)", m.freelist, id, flags)
	}
	if overflow >= m.pgid-m.freelist {
		return corruptf("freelist page %d overflows %d pages past the %d in use", m.freelist, overflow, m.pgid)
	}
	room := ((overflow+1)*pageSize - pageHeaderSize) / 8 // IDs the page and its overflow hold
	first := uint64(0)
	if count == 0xFFFF { // the count is in the first element
		count, first = e.Uint64(hdr[pageHeaderSize:]), 1
	}
	if count > room-first {
		return corruptf("freelist page %d claims %d free pages, it holds at most %d", m.freelist, count, room-first)
	}
	ids := make([]byte, 8*count)
	if _, err := f.ReadAt(ids, off+pageHeaderSize+int64(8*first)); err != nil {
		return corruptf("reading freelist page %d: %w", m.freelist, err)
	}
	for i := 0; i < len(ids); i += 8 {
		if p := e.Uint64(ids[i:]); p < 2 || p >= m.pgid {
			return corruptf("freelist page %d lists page %d, outside the %d pages in use", m.freelist, p, m.pgid)
		}
	}
	return nil
}

// Page flags and element sizes of the b-tree pages checkTree reads.
const (
	branchFlag     = 0x01
	leafFlag       = 0x02
	bucketLeafFlag = 0x01 // a leaf element that is a bucket
	elementSize    = 16   // a branch or leaf page element
	bucketHdrSize  = 16   // a bucket's value: root page u64, sequence u64
)

// checkTree reads, through f, every page bbolt.Open reads through its map
// when the file has no stored freelist (a file written with bbolt's
// NoFreelistSync, which this package never sets) and is opened for
// writing: bbolt then rebuilds the freelist by walking every bucket's
// pages, in a goroutine of its own where a fault cannot be recovered and
// kills the process, and panics on any inconsistency it finds. checkTree
// walks the same pages and fails with ErrCorrupt where that walk would
// fault or complain: a page outside the pages in use or reached twice, a
// page that is neither a branch nor a leaf, an element or key past its
// page, a bucket value too short, keys out of order.
func checkTree(f *os.File, m boltMeta, pageSize uint64) error {
	w := treeWalker{f: f, pageSize: pageSize, pgid: m.pgid, seen: make(map[uint64]bool)}
	_, err := w.node(m.root, nil, nil)
	return err
}

// treeWalker is checkTree's state: the pages seen so far.
type treeWalker struct {
	f              *os.File
	pageSize, pgid uint64
	seen           map[uint64]bool
}

// node reads page id, with its overflow, and checks it and what it leads
// to (treeWalker.elements). The page must lie within the pages in use
// and be reached for the first time.
func (w *treeWalker) node(id uint64, min, max []byte) ([]byte, error) {
	if id < 2 || id >= w.pgid {
		return nil, corruptf("a branch or bucket refers to page %d, outside the %d pages in use", id, w.pgid)
	}
	hdr := make([]byte, pageHeaderSize)
	if _, err := w.f.ReadAt(hdr, int64(id*w.pageSize)); err != nil {
		return nil, corruptf("reading page %d: %w", id, err)
	}
	e := binary.NativeEndian
	overflow := uint64(e.Uint32(hdr[12:]))
	if got := e.Uint64(hdr); got != id || overflow >= w.pgid-id {
		return nil, corruptf("page %d has the header of page %d with %d overflow pages", id, got, overflow)
	}
	for i := id; i <= id+overflow; i++ {
		if w.seen[i] {
			return nil, corruptf("page %d is reached twice", i)
		}
		w.seen[i] = true
	}
	buf := make([]byte, (overflow+1)*w.pageSize)
	if _, err := w.f.ReadAt(buf, int64(id*w.pageSize)); err != nil {
		return nil, corruptf("reading page %d: %w", id, err)
	}
	return w.elements(buf, id, min, max)
}

// elements checks the elements of page p (id is its page, for errors):
// each within p, keys in order and within [min, max) as bbolt's
// key-order check wants them, each branch's child a sound page, each
// bucket in a leaf a sound bucket. It returns the greatest key below p,
// which bounds the next sibling's keys from below. An inline bucket's
// page is p's own bytes, without a header that names it.
func (w *treeWalker) elements(p []byte, id uint64, min, max []byte) (last []byte, err error) {
	e := binary.NativeEndian
	flags, count := e.Uint16(p[8:]), int(e.Uint16(p[10:]))
	if flags != branchFlag && flags != leafFlag {
		return nil, corruptf("page %d is neither a branch nor a leaf (flags %#x)", id, flags)
	}
	if pageHeaderSize+count*elementSize > len(p) {
		return nil, corruptf("page %d claims %d elements, more than it holds", id, count)
	}
	if count == 0 {
		return nil, nil // as bbolt's check: an empty page bounds nothing
	}
	running := min
	for i := range count {
		el := p[pageHeaderSize+i*elementSize:]
		at := uint64(pageHeaderSize + i*elementSize)
		// A branch element is pos u32, ksize u32, child page u64; a leaf
		// element is flags u32, pos u32, ksize u32, vsize u32. pos counts
		// from the element.
		pos, ksize, vsize := uint64(e.Uint32(el)), uint64(e.Uint32(el[4:])), uint64(0)
		if flags == leafFlag {
			pos, ksize, vsize = uint64(e.Uint32(el[4:])), uint64(e.Uint32(el[8:])), uint64(e.Uint32(el[12:]))
		}
		if at+pos+ksize+vsize > uint64(len(p)) {
			return nil, corruptf("element %d of page %d runs past the page", i, id)
		}
		key := p[at+pos : at+pos+ksize]
		if (i == 0 && running != nil && bytes.Compare(running, key) > 0) ||
			(i > 0 && bytes.Compare(running, key) >= 0) ||
			(max != nil && bytes.Compare(key, max) >= 0) {
			return nil, corruptf("key %d of page %d is out of order", i, id)
		}
		if flags == branchFlag {
			next := max
			if i < count-1 {
				nel := p[pageHeaderSize+(i+1)*elementSize:]
				npos, nksize := uint64(e.Uint32(nel)), uint64(e.Uint32(nel[4:]))
				nat := at + elementSize
				if nat+npos+nksize > uint64(len(p)) {
					return nil, corruptf("element %d of page %d runs past the page", i+1, id)
				}
				next = p[nat+npos : nat+npos+nksize]
			}
			if running, err = w.node(e.Uint64(el[8:]), key, next); err != nil {
				return nil, err
			}
			continue
		}
		running = key
		if e.Uint32(el)&bucketLeafFlag != 0 {
			if err := w.bucket(p[at+pos+ksize:at+pos+ksize+vsize], id); err != nil {
				return nil, err
			}
		}
	}
	return running, nil
}

// bucket checks the bucket whose value v is stored on page id: its root
// page's tree, or, for an inline bucket (root 0), the page that follows
// the bucket header in v.
func (w *treeWalker) bucket(v []byte, id uint64) error {
	if len(v) < bucketHdrSize {
		return corruptf("a bucket on page %d has a value of %d bytes", id, len(v))
	}
	root := binary.NativeEndian.Uint64(v)
	if root != 0 {
		_, err := w.node(root, nil, nil)
		return err
	}
	inline := v[bucketHdrSize:]
	if len(inline) < pageHeaderSize {
		return corruptf("an inline bucket on page %d has %d bytes", id, len(inline))
	}
	if binary.NativeEndian.Uint16(inline[8:]) != leafFlag {
		return corruptf("an inline bucket on page %d is not a leaf", id)
	}
	_, err := w.elements(inline, id, nil, nil)
	return err
}
