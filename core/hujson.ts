/**
 * HuJSON (JWCC: "JSON With Commas and Comments"), the format headscale reads
 * its policy in (github.com/tailscale/hujson): standard JSON plus `//` and
 * `/* *\/` comments and a trailing comma after the last element of an array
 * or object. Nothing else is relaxed: keys are quoted strings, strings use
 * double quotes, no NaN/Infinity, no hex, no leading '+' or zeros.
 *
 * A hand-written recursive descent parser rather than a lenient one
 * (jsonc-parser, JSON5) so that exactly what hujson refuses is refused, with
 * the line and column of the first problem. A duplicate key is an error too:
 * headscale's policy decoder rejects it, and it is never meant.
 */

export interface HuJsonPosition {
  /** 1-based line. */
  line: number;
  /** 1-based column, counted in UTF-16 code units (what editors show for BMP text). */
  col: number;
  offset: number;
}

/** A syntax error at a position; `message` says what was expected and what was found. */
export class HuJsonError extends Error {
  override name = "HuJsonError";
  constructor(
    readonly reason: string,
    readonly position: HuJsonPosition,
    /** Set when the text is well formed so far but past one of the HuJsonLimits. */
    readonly limit?: keyof HuJsonLimits,
  ) {
    super(`line ${position.line}, column ${position.col}: ${reason}`);
  }
}

/** Bounds on what one text may hold; past one, parsing stops with a HuJsonError there. */
export interface HuJsonLimits {
  /** Nesting of arrays and objects. @default 200 */
  depth?: number;
  /** Values (objects, arrays, strings, numbers, literals), counted as they are read. @default no bound */
  values?: number;
}

/** Parse HuJSON text into plain JSON values; throws HuJsonError. */
export function parseHuJson(text: string, limits: HuJsonLimits = {}): unknown {
  const p = new Parser(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text, limits.depth ?? MAX_DEPTH, limits.values ?? Infinity);
  p.skipSpace();
  if (p.atEnd()) p.fail("expected a JSON value, found the end of the file (an empty file)");
  const v = p.value(0);
  p.skipSpace();
  if (!p.atEnd()) p.fail(`expected the end of the file after the value, found ${p.describeHere()}`);
  return v;
}

const MAX_DEPTH = 200;

class Parser {
  i = 0;
  private values = 0;
  constructor(
    readonly s: string,
    private maxDepth: number,
    private maxValues: number,
  ) {}

  atEnd(): boolean {
    return this.i >= this.s.length;
  }

  position(at = this.i): HuJsonPosition {
    let line = 1;
    let lineStart = 0;
    for (let k = 0; k < at; k++) {
      if (this.s.charCodeAt(k) === 10) {
        line++;
        lineStart = k + 1;
      }
    }
    return { line, col: at - lineStart + 1, offset: at };
  }

  fail(reason: string, at = this.i, limit?: keyof HuJsonLimits): never {
    throw new HuJsonError(reason, this.position(at), limit);
  }

  describeHere(): string {
    if (this.atEnd()) return "the end of the file";
    const c = this.s[this.i]!;
    const code = c.charCodeAt(0);
    if (code < 0x20 || code === 0x7f) return `the control character U+${code.toString(16).padStart(4, "0").toUpperCase()}`;
    const word = /^[A-Za-z_$][\w$]*/.exec(this.s.slice(this.i, this.i + 40));
    if (word) return `${JSON.stringify(word[0])}`;
    return JSON.stringify(c);
  }

  /** Whitespace (JSON's four characters) and comments. */
  skipSpace(): void {
    for (;;) {
      const c = this.s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) {
        this.i++;
      } else if (c === 0x2f /* / */) {
        const n = this.s.charCodeAt(this.i + 1);
        if (n === 0x2f) {
          const end = this.s.indexOf("\n", this.i + 2);
          this.i = end < 0 ? this.s.length : end + 1;
        } else if (n === 0x2a) {
          const end = this.s.indexOf("*/", this.i + 2);
          if (end < 0) this.fail("a /* comment is not closed with */");
          this.i = end + 2;
        } else this.fail("expected // or /* to start a comment, found a single /");
      } else return;
    }
  }

  value(depth: number): unknown {
    if (depth > this.maxDepth) this.fail(`nesting deeper than ${this.maxDepth} levels`, this.i, "depth");
    if (++this.values > this.maxValues) this.fail(`more than ${this.maxValues} values`, this.i, "values");
    const c = this.s[this.i];
    switch (c) {
      case "{":
        return this.object(depth);
      case "[":
        return this.array(depth);
      case '"':
        return this.string();
      case "t":
        return this.literal("true", true);
      case "f":
        return this.literal("false", false);
      case "n":
        return this.literal("null", null);
      default:
        if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return this.number();
        if (c === "'") this.fail("expected a string in double quotes, found a single quote (HuJSON strings use \")");
        if (c === "}" || c === "]" || c === ",") this.fail(`expected a value, found ${JSON.stringify(c)}`);
        return this.fail(`expected a value (object, array, string, number, true, false or null), found ${this.describeHere()}`);
    }
  }

  literal<T>(word: string, v: T): T {
    if (this.s.startsWith(word, this.i) && !/[\w$]/.test(this.s[this.i + word.length] ?? "")) {
      this.i += word.length;
      return v;
    }
    return this.fail(`expected a value, found ${this.describeHere()}`);
  }

  number(): number {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(this.s.slice(this.i, this.i + 400));
    if (!m) this.fail(`expected a number, found ${this.describeHere()}`);
    const after = this.s[this.i + m[0].length];
    if (after !== undefined && /[\w.$]/.test(after)) this.fail(`expected a number (no leading zeros, hex or trailing dot), found ${JSON.stringify(this.s.slice(this.i, this.i + m[0].length + 1))}`);
    this.i += m[0].length;
    return Number(m[0]);
  }

  string(): string {
    const start = this.i;
    this.i++; // opening quote
    let out = "";
    let run = this.i;
    for (;;) {
      if (this.atEnd()) this.fail("a string is not closed with \" before the end of the file", start);
      const code = this.s.charCodeAt(this.i);
      if (code === 0x22) {
        out += this.s.slice(run, this.i);
        this.i++;
        return out;
      }
      if (code < 0x20) this.fail(code === 0x0a ? "a string is not closed with \" before the end of the line" : `a raw control character U+${code.toString(16).padStart(4, "0").toUpperCase()} in a string (write it as an escape)`);
      if (code === 0x5c) {
        out += this.s.slice(run, this.i);
        const e = this.s[this.i + 1];
        const simple: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
        if (e !== undefined && e in simple) {
          out += simple[e];
          this.i += 2;
        } else if (e === "u") {
          const hex = this.s.slice(this.i + 2, this.i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail(`expected four hex digits after \\u, found ${JSON.stringify(hex)}`);
          out += String.fromCharCode(parseInt(hex, 16));
          this.i += 6;
        } else this.fail(`an unknown escape \\${e ?? ""} in a string (valid: \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)`);
        run = this.i;
        continue;
      }
      this.i++;
    }
  }

  array(depth: number): unknown[] {
    this.i++; // [
    const out: unknown[] = [];
    this.skipSpace();
    if (this.s[this.i] === "]") {
      this.i++;
      return out;
    }
    for (;;) {
      if (this.atEnd()) this.fail("an array is not closed with ]");
      out.push(this.value(depth + 1));
      this.skipSpace();
      const c = this.s[this.i];
      if (c === ",") {
        this.i++;
        this.skipSpace();
        if (this.s[this.i] === "]") {
          this.i++; // a trailing comma
          return out;
        }
        if (this.s[this.i] === ",") this.fail("expected a value after ',', found another ','");
        continue;
      }
      if (c === "]") {
        this.i++;
        return out;
      }
      this.fail(`expected ',' or ']' after an array element, found ${this.describeHere()}`);
    }
  }

  object(depth: number): Record<string, unknown> {
    this.i++; // {
    const out: Record<string, unknown> = {};
    // Offsets, not positions: a position counts lines from the start of the text, which for every key of a large file is quadratic.
    const seen = new Map<string, number>();
    this.skipSpace();
    if (this.s[this.i] === "}") {
      this.i++;
      return out;
    }
    for (;;) {
      if (this.atEnd()) this.fail("an object is not closed with }");
      if (this.s[this.i] !== '"') this.fail(`expected a key in double quotes, found ${this.describeHere()}`);
      const keyAt = this.i;
      const key = this.string();
      const first = seen.get(key);
      if (first !== undefined) {
        const before = this.position(first);
        this.fail(`the key ${JSON.stringify(key)} appears twice in one object (first at line ${before.line}, column ${before.col})`, keyAt);
      }
      seen.set(key, keyAt);
      this.skipSpace();
      if (this.s[this.i] !== ":") this.fail(`expected ':' after the key ${JSON.stringify(key)}, found ${this.describeHere()}`);
      this.i++;
      this.skipSpace();
      if (this.atEnd()) this.fail(`expected a value for the key ${JSON.stringify(key)}, found the end of the file`);
      // defineProperty: a key "__proto__" stays an own property instead of changing the prototype.
      Object.defineProperty(out, key, { value: this.value(depth + 1), enumerable: true, writable: true, configurable: true });
      this.skipSpace();
      const c = this.s[this.i];
      if (c === ",") {
        this.i++;
        this.skipSpace();
        if (this.s[this.i] === "}") {
          this.i++; // a trailing comma
          return out;
        }
        if (this.s[this.i] === ",") this.fail("expected a key after ',', found another ','");
        continue;
      }
      if (c === "}") {
        this.i++;
        return out;
      }
      this.fail(`expected ',' or '}' after the value of ${JSON.stringify(key)}, found ${this.describeHere()}`);
    }
  }
}
