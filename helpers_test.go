package qpool_test

import "fmt"

func fmtMap(m map[string]any) string { return fmt.Sprint(m) }
