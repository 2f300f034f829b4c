# Run under the MicroPython unix port (not CPython): make the littlefs image of the Pico's
# filesystem with MicroPython's own VfsLfs2, the driver the rp2 port mounts at boot
# (ports/rp2/modules/_boot.py: VfsLfs2(rp2.Flash(), progsize=256)).
#
# argv: OUT SRC_DIR. Every file under SRC_DIR is copied to the same path in the image.
# Geometry of RPI_PICO: 4096-byte blocks, 352 of them (1408 KB at flash offset 0xa0000).
import os
import sys

import vfs

BLOCK = 4096
COUNT = 352


class RamBlocks:
    def __init__(self):
        self.data = bytearray(b"\xff" * (BLOCK * COUNT))

    def readblocks(self, n, buf, off=0):
        a = n * BLOCK + off
        buf[:] = self.data[a : a + len(buf)]

    def writeblocks(self, n, buf, off=None):
        if off is None:  # erase then write whole blocks
            self.ioctl(6, n)
            off = 0
        a = n * BLOCK + off
        self.data[a : a + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return COUNT
        if op == 5:  # block size
            return BLOCK
        if op == 6:  # erase
            a = arg * BLOCK
            self.data[a : a + BLOCK] = b"\xff" * BLOCK
            return 0
        return 0


def copy_tree(src, dst):
    for name, kind, *_ in os.ilistdir(src):
        s = src + "/" + name
        d = dst + "/" + name
        if kind == 0x4000:
            os.mkdir(d)
            copy_tree(s, d)
        else:
            with open(s, "rb") as f:
                data = f.read()
            with open(d, "wb") as f:
                f.write(data)


out, src = sys.argv[1], sys.argv[2]
bd = RamBlocks()
vfs.VfsLfs2.mkfs(bd, progsize=256)
vfs.mount(vfs.VfsLfs2(bd, progsize=256), "/flash")
copy_tree(src, "/flash")
vfs.umount("/flash")
with open(out, "wb") as f:
    f.write(bd.data)
