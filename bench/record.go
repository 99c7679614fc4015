package bench

import "time"

// RunRecord is one case run in one process: the JSON line cmd/harness
// writes and cmd/report reads.
type RunRecord struct {
	Round   int                `json:"round"`
	Order   int                `json:"order"`
	Name    string             `json:"name"`
	Group   string             `json:"group"`
	Impl    string             `json:"impl"`
	Floor   string             `json:"floor"`
	Metrics map[string]float64 `json:"metrics"`
	// MaxRSSKB is the child's peak resident set (getrusage ru_maxrss).
	MaxRSSKB int64 `json:"maxrss_kb"`
	// ChildCPUNS is the child's user+system time, startup included.
	ChildCPUNS int64  `json:"child_cpu_ns"`
	WallNS     int64  `json:"wall_ns"`
	Error      string `json:"error,omitempty"`
}

// RunMeta describes a harness run as a whole.
type RunMeta struct {
	Started   time.Time         `json:"started"`
	Finished  time.Time         `json:"finished"`
	Rounds    int               `json:"rounds"`
	BenchTime string            `json:"benchtime"`
	Spin      int               `json:"spin"`
	NumCPU    int               `json:"num_cpu"`
	CPUModel  string            `json:"cpu_model"`
	GoVersion string            `json:"go_version"`
	Command   string            `json:"command"`
	Revision  string            `json:"revision"`
	Modules   map[string]string `json:"modules"`
	LoadAvg   []string          `json:"loadavg"`
}
