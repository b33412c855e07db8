/** POSIX shell quoting for commands the provider runs over SSH. */

/** Quote one argument for a POSIX shell; plain words stay readable in logs. */
export function shq(arg: string): string {
  if (arg !== "" && /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'"'"'`)}'`;
}

/** One argv list as a shell command line (one element per argument, never re-split). */
export function shArgv(argv: readonly string[]): string {
  return argv.map(shq).join(" ");
}
