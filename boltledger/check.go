package boltledger

import (
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
// then cannot release the file. After checkFile accepts a file, bbolt.Open
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
		return nil
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
