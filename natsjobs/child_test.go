package natsjobs_test

const childEnv = "QPOOL_NATSJOBS_CHILD"

func childMain(mode string) int { return 0 }
