# Sourced by the vm/ scripts: a private apt configuration that reaches the
# Debian suites with kernels (bookworm, trixie, trixie-backports, sid) without
# touching the machine's own apt sources, lists or cache. Nothing is
# installed through it: packages are only downloaded and unpacked.
#
#   private_apt DIR [SUITE...]
#                        sets apt_opts (options for apt-get and apt-cache)
#                        and fetches the package lists of the suites (default:
#                        private_apt_suites) into DIR (once an hour)
#
# The mirror is the one the machine's own sources name (its security entry
# left out), so no host name is written here.

# The suites searched, oldest first.
private_apt_suites=(bookworm trixie trixie-backports sid)

private_apt() {
	local dir=$1 uri
	shift
	local suites=("$@")
	[ ${#suites[@]} -gt 0 ] || suites=("${private_apt_suites[@]}")
	uri=$(awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1 || true)
	if [ -z "$uri" ]; then
		uri=$(awk '$1=="deb" && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null || true)
	fi
	if [ -z "$uri" ]; then
		echo "no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list" >&2
		return 1
	fi
	mkdir -p "$dir/lists/partial" "$dir/archives/partial"
	local s
	for s in "${suites[@]}"; do
		echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $s main"
	done >"$dir/sources.list.new"
	# Status /dev/null: what the machine has installed plays no part.
	apt_opts=(-o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$dir/lists" -o "Dir::Cache::archives=$dir/archives"
		-o Dir::State::status=/dev/null -o "Dir::Cache=$dir" -o Dir::Cache::pkgcache=pkgcache.bin -o Dir::Cache::srcpkgcache=srcpkgcache.bin
		-o APT::Sandbox::User=root
		# Package lists only: no AppStream metadata or icons (about 24 MB
		# that the machine's appstream configuration would add), no
		# translations.
		-o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
		-o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
		-o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
		-o Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false
		-o Acquire::Languages=none)
	if cmp -s "$dir/sources.list.new" "$dir/sources.list" && [ -n "$(find "$dir/lists" -maxdepth 1 -name '*Packages*' -mmin -60 2>/dev/null | head -n1)" ]; then
		rm -f "$dir/sources.list.new"
		return 0
	fi
	mv -f "$dir/sources.list.new" "$dir/sources.list"
	apt-get -qq "${apt_opts[@]}" update >&2
}
