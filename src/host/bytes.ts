// Names are bytes. Inside overlayd a name, a path of the union, a link target or an xattr name
// is a *binary string*: one char (U+0000..U+00FF) per byte, as Linux stores it, whether or not
// the bytes are UTF-8. The kernel transport reads and writes them as latin1 and so does the
// addon (native/overlayd_native.c), so a name like "\xff" or "caf\xe9" passes unchanged.
//
// A string that comes from elsewhere as ordinary text (a layer path on the command line, a
// path libfuse decoded, a test's literal) becomes binary here, and only here; so does a name
// going back out as text (libfuse, logs).
import { isUtf8 } from 'node:buffer';

const NON_ASCII = /[^\x00-\x7f]/;
const NOT_BINARY = /[^\x00-\xff]/;

/** Ordinary (UTF-8-meant) text as a binary string: its UTF-8 bytes, one char each. */
export function toBinary(text: string): string {
  return NON_ASCII.test(text) ? Buffer.from(text, 'utf8').toString('latin1') : text;
}

/** The text a binary string's bytes spell in UTF-8, or undefined where they are no valid UTF-8. */
export function fromBinary(bin: string): string | undefined {
  if (!NON_ASCII.test(bin)) return bin;
  const b = Buffer.from(bin, 'latin1');
  return isUtf8(b) ? b.toString('utf8') : undefined;
}

/**
 * A binary string for a person to read (logs, messages): its UTF-8 text, and \xNN for each
 * byte of a name that is no valid UTF-8. Call it only where the line is written.
 */
export function shown(bin: string): string {
  if (NOT_BINARY.test(bin)) return bin; // already text (a message built elsewhere)
  const text = fromBinary(bin);
  if (text !== undefined) return text;
  let out = '';
  for (let i = 0; i < bin.length; i++) {
    const c = bin.charCodeAt(i);
    out += c < 0x80 ? bin[i] : '\\x' + c.toString(16).padStart(2, '0');
  }
  return out;
}
