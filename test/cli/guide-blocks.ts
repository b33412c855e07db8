/**
 * The code blocks of a Markdown guide with how its lab test treats each:
 * the HTML comment on the line before a fence says `<!-- lab: run -->`,
 * `<!-- lab: run, answering yes at the terminal -->` or
 * `<!-- lab: skip: <why, and what the lab does instead> -->`. A fence with no
 * such line is an error: a command added to the guide must be run or say why
 * it is not. Comments do not show on the rendered page.
 */
export interface GuideBlock {
  /** 1-based line of the opening fence. */
  line: number;
  /** The section heading above it. */
  section: string;
  lang: string;
  /** The block's text, its indentation removed. */
  text: string;
  mode: "run" | "run-yes" | "skip";
  /** Why a skipped block is not run. */
  why?: string;
}

const MARK = /^\s*<!-- lab: (run|run, answering yes at the terminal|skip: (.+?)) -->\s*$/;

export function guideBlocks(md: string): { blocks: GuideBlock[]; problems: string[] } {
  const lines = md.split("\n");
  const blocks: GuideBlock[] = [];
  const problems: string[] = [];
  let section = "";
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (/^#{1,6} /.test(l)) section = l.replace(/^#+ /, "");
    const open = /^(\s*)```(\w*)\s*$/.exec(l);
    if (!open) continue;
    const indent = open[1]!.length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]!); j++) body.push(lines[j]!.slice(indent));
    if (j >= lines.length) problems.push(`line ${i + 1}: a code block that is never closed`);
    const m = MARK.exec(lines[i - 1] ?? "");
    if (!m) problems.push(`line ${i + 1} (${section}): a code block without a \`<!-- lab: run -->\` or \`<!-- lab: skip: why -->\` line before it`);
    else blocks.push({ line: i + 1, section, lang: open[2]!, text: body.join("\n"), mode: m[1] === "run" ? "run" : m[2] ? "skip" : "run-yes", ...(m[2] ? { why: m[2] } : {}) });
    i = j;
  }
  return { blocks, problems };
}
