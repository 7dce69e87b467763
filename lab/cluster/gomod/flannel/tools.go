//go:build tools

// The command built from this module (see lab/cluster/build-bins.sh).
package tools

import _ "github.com/flannel-io/flannel"
