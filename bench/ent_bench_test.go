package bench

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
)

// smallValue is a value whose boxing allocates nothing (Go interns the
// interfaces of single-byte integers), so store overhead is all that shows.
func smallValue(i int) any { return i & 0xff }

// fill writes n distinct keys to s.
func fill(b *testing.B, s Store, keys []string) {
	b.Helper()
	for i, k := range keys {
		if err := s.Update(k, smallValue(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEntUpdate is UpdateState with 10, 1,000 and 100,000 keys present,
// updating those keys round-robin, for each store configuration. With a
// watch or callback the timing includes waiting until it has seen every
// change.
func BenchmarkEntUpdate(b *testing.B) {
	for _, nk := range UpdateKeys {
		keys := Keys(nk)
		b.Run(fmt.Sprintf("keys=%d", nk), func(b *testing.B) {
			for _, sc := range Stores() {
				b.Run(sc.Name, func(b *testing.B) {
					s := sc.New()
					defer s.Close()
					fill(b, s, keys)
					es, _ := s.(*EntStore)
					hooked := es != nil && es.hook != 0
					var base uint64
					if hooked {
						if es.hook != hookStateChange {
							es.WaitSeen(uint64(nk)) // the fill's changes
						}
						es.Arm()
						base = es.Seen()
					}
					b.ReportAllocs()
					b.ResetTimer()
					for i := range b.N {
						if err := s.Update(keys[i%nk], smallValue(i)); err != nil {
							b.Fatal(err)
						}
					}
					if hooked {
						es.WaitSeen(base + uint64(b.N))
					}
				})
			}
		})
	}
}

// BenchmarkEntUpdateContended is UpdateState from 2, 8 and 64 goroutines
// sharing b.N updates, on 1,000 keys.
func BenchmarkEntUpdateContended(b *testing.B) {
	keys := Keys(1000)
	for _, g := range Contentions {
		b.Run(fmt.Sprintf("g=%d", g), func(b *testing.B) {
			for _, sc := range Stores()[:2] {
				b.Run(sc.Name, func(b *testing.B) {
					s := sc.New()
					defer s.Close()
					fill(b, s, keys)
					b.ReportAllocs()
					b.ResetTimer()
					var wg sync.WaitGroup
					for w := range g {
						n := b.N/g + btoi(w < b.N%g)
						wg.Go(func() {
							for i := range n {
								_ = s.Update(keys[(w*7919+i)%len(keys)], smallValue(i))
							}
						})
					}
					wg.Wait()
					b.StopTimer()
					if got := s.Len(); got != uint64(len(keys)+b.N) {
						b.Fatalf("recorded %d changes, want %d", got, len(keys)+b.N)
					}
				})
			}
		})
	}
}

func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}

// BenchmarkEntGet is GetState of 1,000 present keys from one goroutine.
func BenchmarkEntGet(b *testing.B) {
	keys := Keys(1000)
	for _, sc := range Stores()[:2] {
		b.Run(sc.Name, func(b *testing.B) {
			s := sc.New()
			defer s.Close()
			fill(b, s, keys)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok := s.Get(keys[i%len(keys)]); !ok {
					b.Fatal("key missing")
				}
				i++
			}
		})
	}
}

// BenchmarkEntGetParallel is GetState under b.RunParallel.
func BenchmarkEntGetParallel(b *testing.B) {
	keys := Keys(1000)
	for _, sc := range Stores()[:2] {
		b.Run(sc.Name, func(b *testing.B) {
			s := sc.New()
			defer s.Close()
			fill(b, s, keys)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, ok := s.Get(keys[i%len(keys)]); !ok {
						b.Error("key missing")
						return
					}
					i++
				}
			})
		})
	}
}

// ledgerSize is the history length of the read benchmarks.
const ledgerSize = 1_000_000

func bigStore(b *testing.B, sc StoreCase) Store {
	b.Helper()
	keys := Keys(1000)
	s := sc.New()
	for i := range ledgerSize {
		if err := s.Update(keys[i%len(keys)], smallValue(i)); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// BenchmarkEntTail10 reads the last 10 changes of a 1,000,000-change ledger.
func BenchmarkEntTail10(b *testing.B) {
	for _, sc := range Stores()[:2] {
		b.Run(sc.Name, func(b *testing.B) {
			s := bigStore(b, sc)
			defer s.Close()
			b.ReportAllocs()
			for b.Loop() {
				if n := s.Tail(ledgerSize - 10); n != 10 {
					b.Fatalf("read %d changes", n)
				}
			}
		})
	}
}

// BenchmarkEntReadAll reads the whole of a 1,000,000-change ledger.
func BenchmarkEntReadAll(b *testing.B) {
	for _, sc := range Stores()[:2] {
		b.Run(sc.Name, func(b *testing.B) {
			s := bigStore(b, sc)
			defer s.Close()
			b.ReportAllocs()
			for b.Loop() {
				if n := s.Tail(0); n != ledgerSize {
					b.Fatalf("read %d changes", n)
				}
			}
		})
	}
}

// BenchmarkEntRetained reports the heap a store retains per change after
// 1,000,000 updates of a small value over 1,000 keys (the keys' strings are
// shared and not counted). Run it with -benchtime=1x.
func BenchmarkEntRetained(b *testing.B) {
	keys := Keys(1000)
	for _, sc := range Stores()[:2] {
		b.Run(sc.Name, func(b *testing.B) {
			var ms runtime.MemStats
			for range b.N {
				runtime.GC()
				runtime.ReadMemStats(&ms)
				before := ms.HeapAlloc
				s := sc.New()
				for i := range ledgerSize {
					if err := s.Update(keys[i%len(keys)], smallValue(i)); err != nil {
						b.Fatal(err)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&ms)
				b.ReportMetric(float64(int64(ms.HeapAlloc)-int64(before))/ledgerSize, "retained-B/change")
				if s.Len() != ledgerSize {
					b.Fatal("lost changes")
				}
				s.Close()
			}
		})
	}
}
