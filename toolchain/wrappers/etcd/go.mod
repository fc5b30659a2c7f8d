// Wrapper module: etcd's own main package (go.etcd.io/etcd/v3) is a module with local replaces, so this
// two-line main runs the published server module's etcdmain.
module endpoints.local/toolchain/etcd

go 1.26.0

