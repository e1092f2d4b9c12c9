package netdevsim

// Hooks for the kernel tests of package netdevsim_test.

// SetRandID replaces the id picker of b.
func (b *Bus) SetRandID(f func() int) { b.randID = f }

// WriteBusFile writes data to the bus file name from the calling thread,
// as Link, Unlink and Delete do.
func (b *Bus) WriteBusFile(name, data string) error { return b.write(nil, name, data) }

// SetFileWriter replaces the function that opens and writes a bus file; it
// still runs on a thread inside the namespace, as the real one does.
func (b *Bus) SetFileWriter(f func(path, data string) (op string, err error)) {
	b.sysWrite = func(ns Namespace, path, data string) (string, error) {
		return writeInNS(ns, path, data, f)
	}
}
