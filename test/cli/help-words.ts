/** Words of the project's history that mean nothing to a user (issue 13, item 7). */
export const JARGON = [/\bseeds?\b/i, /\bseed 0\d\d\b/i, /\bphase \d/i];
