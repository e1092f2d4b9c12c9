// Package kmod finds the kernel modules a VM run needs and loads them.
//
// On the host, [Open] reads a kernel's module tree (an installed
// lib/modules/RELEASE folder, or a kernel build tree that was never
// installed) and [Tree.Resolve] turns module names into the files to load,
// dependencies first. Dependencies come from the tree's own modules.dep
// when it has one (make modules_install and depmod write it); otherwise
// from the "depends=" entry that modpost wrote into each module's .modinfo
// section, the same list depmod would have used. Modules the kernel has
// built in (modules.builtin) need no file.
//
// In the VM, [Load] hands a file to finit_module(2). A compressed module
// (.ko.xz, .ko.zst, .ko.gz) goes as it is with MODULE_INIT_COMPRESSED_FILE,
// which the kernel decompresses itself when it was built with
// CONFIG_MODULE_DECOMPRESS and that compression (kernel/module/decompress.c);
// where it refuses (EINVAL from an older kernel or another compression,
// EOPNOTSUPP without MODULE_DECOMPRESS), Load decompresses in Go and uses
// init_module(2).
//
// Decompression uses github.com/ulikunitz/xz and
// github.com/klauspost/compress/zstd (gzip comes with Go): the libraries
// that u-root's kmodule uses for the same job. kmodule itself does not fit:
// it always decompresses in user space, needs a modules.dep, and loads a
// module's dependencies from goroutines of its own.
package kmod
