// Package patch applies vmbuild recipe patches to an upstream source tree,
// hermetically and in pure Go, and reports what they did.
//
// A recipe patch is either a unified diff ([Parse], [Patch.Apply],
// [ApplyDiff]) or a shell script ([RunScript]). Each runs as one BuildKit
// exec step through the static vmbuild-helper binary ([HelperMain]),
// which writes a JSON [Report]; the client turns a failed report into an
// error with [Report.Err]. [DiffTrees] goes the other way and turns two
// trees into a diff this package (and git apply) can apply.
//
// # Diff dialects
//
// Parse accepts:
//
//   - `git diff` output: "diff --git" headers with new file, deleted file,
//     old/new mode, rename from/to, copy from/to, similarity and index
//     lines; C-quoted path names ("a/t\303\251st"); names with spaces
//     (with or without git's trailing tab); --no-prefix and
//     mnemonic-prefix (i/ w/ c/) output;
//   - `git format-patch` output and mbox series of several patches: the
//     mail header, commit message, "---" line, diffstat and "-- "
//     signature are skipped, and the diffs apply one after the other;
//   - `diff -u`, `diff -ruN` (and svn-style "Index:" headers): timestamps
//     after a tab are ignored; a side named /dev/null or stamped with the
//     Unix epoch (as diff -N does, in any time zone) means the file is
//     created or deleted, and so does a lone "@@ -0,0" hunk.
//
// Hunks may end in "\ No newline at end of file"; an empty line inside a
// hunk is taken as an empty context line. Binary diffs ("GIT binary
// patch", "Binary files ... differ") and submodule changes are refused
// with reason "parse", as is a patch with no diff in it.
//
// Path prefixes: in a git diff, the a/ and b/ (or any other one-component)
// prefix is stripped when the two names on the "diff --git" line differ,
// and kept when they are equal (--no-prefix); rename and copy lines carry
// no prefix. In traditional diffs one leading component is stripped
// (like patch -p1) when every old name starts with "a/" and every new
// name with "b/", or when every diff compares two different top
// directories (diff -ruN mastodon.orig mastodon); otherwise names are used
// as they are (-p0), with a leading "./" removed. The two names of a
// traditional diff (after that stripping) must be the same file, or a file
// and its backup: one may be the other plus ".orig", "~", ".bak", ".old"
// or ".new" (diff -u x.c.orig x.c, diff -u x.c x.c.new); either may be
// /dev/null for a created or deleted file. Other pairs are refused with
// reason "parse", naming the patch line. Of a file and its backup the file
// is patched (the name with the fewest components, then the shortest base
// name, then the shortest name, as GNU patch does). In a git diff, the
// ---/+++ names must match the "diff --git" names, or for a rename or copy
// its "from" and "to" names (with or without a prefix), as git apply
// requires.
//
// # Strictness
//
// By default every hunk must match exactly, at the line its header says
// (shifted by how far earlier hunks of the same file moved). The header's
// line counts must agree with the body; hunks of a file must be in order
// and must not overlap. A hunk that starts at line 1 must match at the
// start of the file and a hunk with leading but no trailing context must
// match at the end of the file (unless it has no context at all, as with
// diff -U0), so that a change meant for the end of a file is not applied
// in its middle.
//
// [WithOffset] (--offset) lets a hunk match at other lines, nearest to the
// expected line first (below before above on a tie); anchored hunks do
// not move. [WithFuzz] (--fuzz N, N ≤ 3) lets a hunk match while ignoring
// up to N of its leading and N of its trailing context lines, as GNU
// patch's fuzz factor does; the ignored lines are kept from the file.
// Every fuzz level is tried at every allowed position before the next
// level. Inexact matches are logged at warning level.
//
// A hunk that does not apply is reported with the patch name, the hunk
// header, the target file and the first line (1-based, in the target)
// where the expected text differs from the file, with both texts.
//
// Applying is all or nothing: every result is computed in memory, and
// only when all files apply is anything written. Files are replaced
// through a temporary file and a rename (so hard links are never written
// through); created directories get mode 0755; modified files keep their
// mode unless the diff changes it; new files get 0644, or 0755 for git
// mode 100755. Directories emptied by deletions are removed, as git apply
// does. A patch whose result equals the tree is a no-op: a failure with
// reason "noop" unless [WithOptional] (--optional) is set.
//
// # Safety
//
// A patch is untrusted input (compare git CVE-2023-23946 and GNU patch
// CVE-2019-13636). Before anything is applied, [Patch.CheckSafe] refuses
// every path (old and new, rename and copy sources included, and both
// names of a traditional diff even when only one is patched) that is
// empty, absolute, contains a NUL byte or a backslash, has an empty, "."
// or ".." component, or has a component that is or could be taken for
// ".git" on some file system: any case, trailing dots or spaces, an NTFS
// stream suffix (".git::$INDEX_ALLOCATION"), the NTFS short name "git~1",
// or HFS+ ignorable code points. It also refuses diffs that create or
// change symbolic links (mode 120000): a patch cannot make a link, so it
// cannot plant one to write through later.
//
// While applying, a path is refused if any of its parent directories in
// the tree is a symbolic link ("beyond a symbolic link", as git apply
// says; links that stay inside the tree are refused too) or if the file
// itself is a symbolic link or not a regular file. All these are reason
// "unsafe" and wrap errs.ErrUnsafePatch. Finally, every file system
// access to the tree goes through an [os.Root], so not even a bug here
// can reach outside it.
//
// # Scripts
//
// [RunScript] runs `/bin/sh -e -x SCRIPT` in the tree with a minimal
// environment, snapshots the tree (mode and SHA-256 of every file, .git
// ignored) before and after, and reports per-file operations and line
// counts (computed with a Myers line diff; files over 4 MiB or binary
// count 0 lines). Exact renames are recognised. A script that exits
// non-zero is reported with the last command the shell traced (mapped
// back to the script line as written when possible), the last 30 lines of
// output and the exit code.
//
// # Failure reasons
//
// hunk: a hunk does not match. context: the tree is not in the shape the
// patch expects outside any hunk (a file to modify is a directory, a file
// to delete has more content, a parent to create is a file). missing-file:
// a file to modify, delete, rename or copy does not exist. exists: a file
// to create, or a rename or copy target, exists. unsafe: see Safety.
// script: a script failed. noop: nothing changed. parse: the patch text
// is not an accepted diff.
package patch
