#!/usr/bin/env node
// Brown corpus (form C, tagged: word/tag tokens) -> plain text on stdout.
// Usage: node brown2txt.js CORPUS_DIR
// A line that starts with a tab, or follows blank lines, opens a paragraph; other lines are
// further sentences of it. Headlines (every tag ends in -hl) stand alone. Output: one paragraph per line (its sentences joined by spaces), a blank line between
// documents, documents in file-name order (ca01 ... cr09), so the text is deterministic.
'use strict';
const fs = require('fs');
const path = require('path');

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: brown2txt.js CORPUS_DIR\n');
  process.exit(2);
}
const files = fs.readdirSync(dir).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
if (files.length !== 500) {
  process.stderr.write(`brown2txt: expected 500 corpus files in ${dir}, found ${files.length}\n`);
  process.exit(1);
}

const OPEN = new Set(['``', '`', '(', '[', '{', '$']); // no space after
const CLOSE = new Set([',', '.', ';', ':', '?', '!', ')', ']', '}', "''", "'", '%']); // none before
const MAP = { '``': '"', "''": '"', '`': "'" };

// Drop the tag after the last '/', map the quote tokens, join with English spacing.
function sentence(line) {
  let out = '';
  let glue = true; // no space before the next word
  for (const tok of line.trim().split(/\s+/)) {
    const slash = tok.lastIndexOf('/');
    const word = slash > 0 ? tok.slice(0, slash) : tok;
    const text = MAP[word] || word;
    if (word === '.' && out.endsWith('.')) continue; // "Jr." ending a sentence
    if (!glue && !CLOSE.has(word)) out += ' ';
    out += text;
    glue = OPEN.has(word);
  }
  return out;
}

const docs = [];
for (const f of files) {
  const paragraphs = [];
  let fresh = true; // the next line opens a paragraph
  for (const raw of fs.readFileSync(path.join(dir, f), 'latin1').split('\n')) {
    if (raw.trim() === '') {
      fresh = true;
      continue;
    }
    const s = sentence(raw);
    const headline = raw.trim().split(/\s+/).every((t) => /-hl$/.test(t));
    if (fresh || headline || raw.startsWith('\t')) paragraphs.push(s);
    else paragraphs[paragraphs.length - 1] += ' ' + s;
    fresh = headline;
  }
  docs.push(paragraphs.join('\n'));
}
process.stdout.write(docs.join('\n\n') + '\n');
