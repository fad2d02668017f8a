// Names as a log line shows them. A name is bytes (Linux allows any but '/' and NUL): valid
// UTF-8 reads as text, every other byte as \xNN, so a line never rewrites a name into another
// one (U+FFFD would) and stays one JSON string. The one place logs render names.

/** The bytes b[start, end) as a readable name. */
export function showBytes(b: Uint8Array, start = 0, end = b.length): string {
  let out = '';
  let i = start;
  while (i < end) {
    const c = b[i];
    if (c < 0x80) {
      out += c < 0x20 || c === 0x7f || c === 0x5c ? escape(c) : String.fromCharCode(c);
      i++;
      continue;
    }
    const n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
    const cp = n > 0 && i + n <= end ? sequence(b, i, n) : -1;
    if (cp < 0) {
      out += escape(c);
      i++;
    } else {
      out += String.fromCodePoint(cp);
      i += n;
    }
  }
  return out;
}

/** A name held as a binary string (one char per byte, latin1), as showBytes shows its bytes. */
export function showName(name: string): string {
  // A char past 0xff means the string is already text (UTF-16): shown as it is.
  for (let i = 0; i < name.length; i++) if (name.charCodeAt(i) > 0xff) return name;
  return showBytes(Buffer.from(name, 'latin1'));
}

function escape(c: number): string {
  return c === 0x5c ? '\\\\' : '\\x' + c.toString(16).padStart(2, '0');
}

/** The code point of the n-byte UTF-8 sequence at b[i], or -1 if it is not a valid one. */
function sequence(b: Uint8Array, i: number, n: number): number {
  let cp = b[i] & (0xff >> (n + 1));
  for (let k = 1; k < n; k++) {
    const x = b[i + k];
    if ((x & 0xc0) !== 0x80) return -1;
    cp = (cp << 6) | (x & 0x3f);
  }
  const min = n === 2 ? 0x80 : n === 3 ? 0x800 : 0x10000;
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
  return cp;
}
