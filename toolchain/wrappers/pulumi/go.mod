// Wrapper module: builds the Pulumi CLI (github.com/pulumi/pulumi/pkg/v3/cmd/pulumi) from the published
// pkg/v3 and sdk/v3 modules. pkg/go.mod replaces sdk/v3 with a local ../sdk (so `go install pkg@v` refuses
// it); this module requires the published sdk/v3 of the same release and repeats pkg's non-local replaces.
module endpoints.local/toolchain/pulumi

go 1.26.6


replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
