//go:build !qpoolhooks

package inspect

import (
	"net/http"

	"github.com/qpool/qpool"
)

type jobJSON struct{}

func oldestQueued(qpool.Stats) float64 { return 0 }

func (in *Inspector) jobList([]namedPool, int, int) []jobJSON { return nil }

func (in *Inspector) jobs(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotImplemented, "needs the hooks API")
}
func (in *Inspector) job(w http.ResponseWriter, r *http.Request, _ string) {
	writeError(w, http.StatusNotImplemented, "needs the hooks API")
}
func (in *Inspector) cancelJob(w http.ResponseWriter, r *http.Request, _ string) {
	writeError(w, http.StatusNotImplemented, "needs the hooks API")
}
