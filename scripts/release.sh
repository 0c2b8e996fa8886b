#!/usr/bin/env bash
# Tags a release: scripts/release.sh vX.Y.Z (or make release VERSION=vX.Y.Z).
#
# It refuses, changing nothing, unless: the version reads vMAJOR.MINOR.PATCH
# (with an optional -prerelease), the tree is clean and on the release branch
# (RELEASE_BRANCH, default main), no tag of that name exists, and CHANGELOG.md
# has a non-empty "## [X.Y.Z] - YYYY-MM-DD" section. Then it runs the checks
# (RELEASE_CHECKS, default "bash .ci/run": what CI runs) and, if they pass, makes an
# annotated tag whose message is that changelog section. It never pushes:
# it prints the command that publishes the tag. See docs/releasing.md.
set -euo pipefail

die() { echo "release: $*" >&2; exit 1; }

version=${1:-}
[ -n "$version" ] || die "usage: scripts/release.sh vX.Y.Z (make release VERSION=vX.Y.Z)"
[[ "$version" =~ ^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$ ]] ||
	die "version \"$version\" is not vMAJOR.MINOR.PATCH (e.g. v0.3.0 or v1.0.0-rc.1)"
number=${version#v}

cd "$(git rev-parse --show-toplevel)"
branch=$(git rev-parse --abbrev-ref HEAD)
want=${RELEASE_BRANCH:-main}
[ "$branch" = "$want" ] || die "on branch $branch; releases are tagged on $want (RELEASE_BRANCH)"
[ -z "$(git status --porcelain)" ] || die "the working tree has changes; commit or stash them first"
! git rev-parse -q --verify "refs/tags/$version" >/dev/null || die "tag $version exists already"

[ -f CHANGELOG.md ] || die "CHANGELOG.md is missing"
# The section: from its heading to the next "## " heading.
notes=$(awk -v h="## [$number] - " '
	index($0, h) == 1 { found = 1; print; next }
	found && /^## / { exit }
	found { print }' CHANGELOG.md)
[ -n "$notes" ] || die "CHANGELOG.md has no \"## [$number] - YYYY-MM-DD\" section: move the Unreleased entries under it first"
date=$(head -n 1 <<<"$notes" | sed -n 's/^## \[[^]]*\] - \([0-9]\{4\}-[0-9]\{2\}-[0-9]\{2\}\).*/\1/p')
[ -n "$date" ] || die "the heading of $number in CHANGELOG.md lacks its date: \"## [$number] - YYYY-MM-DD\""
[ -n "$(tail -n +2 <<<"$notes" | tr -d '[:space:]')" ] || die "the $number section of CHANGELOG.md is empty"

checks=${RELEASE_CHECKS:-bash .ci/run}
echo "release: running the checks: $checks"
bash -c "$checks" || die "the checks failed; nothing was tagged"
# The checks must not have changed the tree (generated files out of date).
[ -z "$(git status --porcelain)" ] || die "the checks changed the working tree; nothing was tagged"

git tag -a "$version" -F - <<<"reelq $version

$notes"
echo "release: tagged $version at $(git rev-parse --short HEAD)."
echo "release: publish it with: git push origin $version"
