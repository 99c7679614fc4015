package ledgertest_test

import (
	"context"
	"fmt"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/ledgertest"
)

// ExampleCheck checks the reference ledger outside a test.
func ExampleCheck() {
	err := ledgertest.Check(context.Background(), func() (qpool.Ledger, error) {
		return qpool.NewMemoryLedger(), nil
	})
	fmt.Println("conforms:", err == nil)
	// Output: conforms: true
}
