import hashlib
import tarfile

from almadeliver.packaging.tarballs import FIXED_MTIME, tree_entries, write_tar


def _tree(root):
    (root / "member" / "script").mkdir(parents=True)
    (root / "member" / "script" / "scriptForPI.py").write_text("print('hi')\n")
    (root / "member" / "README").write_text("readme\n")
    (root / "member" / "script" / "scriptForPI.py").chmod(0o700)


def test_same_input_same_bytes(tmp_path):
    _tree(tmp_path / "a")
    one = write_tar(tmp_path / "one.tar", tree_entries(tmp_path / "a" / "member", "p/sg/g/member"))
    (tmp_path / "a" / "member" / "README").touch()  # a new mtime must not change the bytes
    two = write_tar(tmp_path / "two.tar", reversed(tree_entries(tmp_path / "a" / "member", "p/sg/g/member")))
    assert hashlib.sha256(one.read_bytes()).digest() == hashlib.sha256(two.read_bytes()).digest()
    with tarfile.open(one) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and names[:3] == ["p", "p/sg", "p/sg/g"]
    assert all(m.mtime == FIXED_MTIME and m.uid == 0 for m in members)
    script = next(m for m in members if m.name.endswith("scriptForPI.py"))
    assert script.mode == 0o755
    assert not (tmp_path / "one.tar.part").exists()
