// Our own Python language host for the Pulumi engine. The upstream host
// (github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3) is a module the Go proxy does not
// serve, so this small host is built on the published sdk/v3 of the same release as the CLI: it runs a
// program through the `pulumi-language-python-exec` shim of that release (copied beside the binary from
// the sdk/v3 module) and plugins (policy packs) as `python <dir>`, in the project's virtualenv.
module endpoints.local/toolchain/pulumi-language-python

go 1.26.6

