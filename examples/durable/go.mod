module github.com/qpool/qpool/examples/durable

go 1.26.0

require (
	github.com/qpool/qpool v0.1.0
	github.com/qpool/qpool/boltledger v0.1.0
	github.com/stretchr/testify v1.12.1
	go.uber.org/goleak v1.3.0
)

require (
	go.etcd.io/bbolt v1.5.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/sys v0.45.0 // indirect
)

replace (
	github.com/qpool/qpool => ../..
	github.com/qpool/qpool/boltledger => ../../boltledger
)
