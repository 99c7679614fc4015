// Package inspect serves a read-only view of qpool pools and entanglements
// over HTTP: JSON endpoints and one live HTML page.
//
// Nothing is registered at import time (unlike net/http/pprof): build an
// [Inspector] with [New], name each pool and entanglement it may show, and
// mount it where you want it, behind your own authentication:
//
//	insp, err := inspect.New(
//		inspect.WithPool("mail", mailPool),
//		inspect.WithEntanglement(orderState),
//	)
//	if err != nil {
//		log.Fatal(err)
//	}
//	mux.Handle("/qpool/", http.StripPrefix("/qpool", requireAdmin(insp)))
//
// The Inspector works under any prefix, with or without the trailing slash
// stripped; a request for the prefix itself without its slash is redirected
// to the slash form, so that the page's relative links resolve under it.
//
// # Endpoints
//
// All answers are JSON (application/json) except the page and its assets:
//
//	GET /                                 the live page
//	GET /pools                            every pool's Stats
//	GET /jobs?pool=&state=&limit=         live jobs (waiting, queued, running)
//	GET /jobs/{id}?pool=                  one job, live or recently finished
//	GET /entanglements                    every entanglement: state, values capped
//	GET /entanglements/{id}               one entanglement
//	GET /entanglements/{id}/history?since=&limit=   its ledger tail
//	POST /jobs/{id}/cancel?pool=          only with [WithCancel]
//
// An unknown pool, job or entanglement is a 404, a malformed query
// parameter a 400, both with a JSON body {"error": "..."}.
//
// # User data
//
// Job IDs, state keys, values and error messages are user input. JSON
// answers are encoded with encoding/json, which escapes <, > and &; the page
// is an html/template whose script sets text only through textContent, and
// is served with a Content-Security-Policy that allows no inline script.
// Values and error messages are rendered as text (values as their JSON
// encoding, or %v when they have none) capped at [WithValueLimit] bytes.
//
// # Cost
//
// The Inspector holds no goroutine and no lock of its own between requests;
// each request reads the pools' snapshots (Pool.Stats, Pool.Jobs) and the
// entanglements' snapshots and histories, which never stop the pool. The
// page polls (see the page's script for why not server-sent events): each
// open page costs about three small requests per poll interval
// ([WithPollInterval]), plus one per entanglement shown.
package inspect
