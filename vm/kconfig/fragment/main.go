// Command fragment prints the kselftest config fragment of the suite
// (kconfig.Fragment) from vm/kernel.config, the file its argument names.
//
//	go run ./vm/kconfig/fragment vm/kernel.config >DIR/config
package main

import (
	"fmt"
	"os"

	"github.com/netdev-go/busypolltest/vm/kconfig"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: fragment vm/kernel.config")
		os.Exit(2)
	}
	b, err := os.ReadFile(os.Args[1])
	if err == nil {
		var f string
		if f, err = kconfig.Fragment(string(b)); err == nil {
			_, err = os.Stdout.WriteString(f)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fragment:", err)
		os.Exit(1)
	}
}
