package natsledger_test

import (
	"errors"

	"github.com/qpool/qpool"
)

func errorsIsConflict(err error) bool { return errors.Is(err, qpool.ErrConflict) }
