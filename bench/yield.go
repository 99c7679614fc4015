package bench

import "runtime"

func yield() { runtime.Gosched() }
