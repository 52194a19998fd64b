// Pretty-prints JSON text by re-indenting the text itself, so that what is
// shown is exactly what was received: numbers keep every digit (JSON.parse
// would round 12345678901234567890), key order and escapes are kept.

/** `text` re-indented, or null when it is not a JSON document. */
export function pretty(text, indent = "  ") {
  try {
    JSON.parse(text); // validates; the value itself is not used
  } catch {
    return null;
  }
  let out = "";
  let depth = 0;
  let i = 0;
  const newline = () => { out += "\n" + indent.repeat(depth); };
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
      continue;
    }
    if (c === " " || c === "\n" || c === "\r" || c === "\t") { i++; continue; }
    if (c === "{" || c === "[") {
      const close = c === "{" ? "}" : "]";
      let j = i + 1;
      while (j < text.length && " \n\r\t".includes(text[j])) j++;
      if (text[j] === close) { out += c + close; i = j + 1; continue; }
      depth++;
      out += c;
      newline();
    } else if (c === "}" || c === "]") {
      depth--;
      newline();
      out += c;
    } else if (c === ",") {
      out += ",";
      newline();
    } else if (c === ":") {
      out += ": ";
    } else {
      out += c;
    }
    i++;
  }
  return out;
}
