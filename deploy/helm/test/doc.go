// Package test lints and renders troy's Helm chart with Helm's own Go packages. It is a
// module of its own so that troy's server does not take in Kubernetes' dependencies.
package test
