#!/bin/sh
# Turns the example Astro site (a plain folder in this repo) into a bare git
# repository the worker can clone and push to, for docker compose:
#
#   SITE_SRC  the site's files, mounted read-only   (default /srv/example-site)
#   REPO_DIR  the bare repository to create          (default /srv/git/example-site.git)
#
# The repository is shared (--shared=0777): the worker runs git as each
# tenant's own uid, and every tenant clones from it and pushes to it.
# The worker then uses REPO_URL=file:///srv/git/example-site.git. An existing
# repository is left alone, so the threads the worker pushed survive restarts.
# node_modules, dist and .astro of the source folder are not committed.
set -eu

src="${SITE_SRC:-/srv/example-site}"
dest="${REPO_DIR:-/srv/git/example-site.git}"

if [ -f "$dest/HEAD" ]; then
  echo "seed-site-repo: $dest already exists, left as it is"
  exit 0
fi
if [ ! -f "$src/package.json" ]; then
  echo "seed-site-repo: no package.json in $src: mount the example site there" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# The source folder is read-only and may belong to another uid: the git dir
# lives in $tmp and the folder is only read as the work tree.
git_() {
  git -c safe.directory='*' -c init.defaultBranch=main \
    -c user.name="Example Site" -c user.email="example-site@localhost" \
    --git-dir="$tmp/site.git" --work-tree="$src" "$@"
}

git_ init -q
printf '%s\n' node_modules/ dist/ .astro/ .env '.env.*' >"$tmp/site.git/info/exclude"
git_ add -A
git_ commit -q -m "Example site"
mkdir -p "$(dirname "$dest")"
git init -q --bare --shared=0777 -b main "$dest"
git -c safe.directory='*' --git-dir="$tmp/site.git" push -q "$dest" main
chmod 0755 "$(dirname "$dest")"
echo "seed-site-repo: created $dest from $src"
