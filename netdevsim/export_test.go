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

// SetOwner makes b record its devices as those of process pid started at
// tick start, instead of this process: with a pid that cannot run, they
// are a dead owner's, as if this process had been killed.
func (b *Bus) SetOwner(pid int, start uint64) {
	b.self = func() (owner, error) { return owner{pid: pid, start: start}, nil }
}

// ResetClosed undoes DeleteAll's refusal of new devices, for tests that
// call DeleteAll and go on.
func ResetClosed() {
	registry.Lock()
	defer registry.Unlock()
	registry.closed = ""
}
