package natsledger_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/qpool/qpool"
	"github.com/qpool/qpool/ledgertest"
	"github.com/qpool/qpool/natsledger"
)

// reopenable lets the suite check that Close keeps the stream and Drop
// deletes it, by opening the same entanglement again.
type reopenable struct {
	*natsledger.Ledger
	nc *nats.Conn
}

func (r reopenable) Reopen() (qpool.Ledger, error) {
	l, err := natsledger.Open(context.Background(), r.nc, r.ID())
	if err != nil {
		return nil, err
	}
	return reopenable{l, r.nc}, nil
}

func TestConformance(t *testing.T) {
	nc := connect(t, startServer(t).url())
	ledgertest.Run(t, func(t *testing.T) qpool.Ledger {
		l, err := natsledger.Open(context.Background(), nc, uniqueID(t))
		if err != nil {
			t.Fatal(err)
		}
		return reopenable{l, nc}
	})
}
