// Validates Continue config.yaml files with Continue's own parser (npm @continuedev/config-yaml).
// Usage: node validate-config.mjs NODE_PREFIX FILE...   (NODE_PREFIX: where the package is installed)
// Prints one JSON object per file: {file, parseError, errors: [{fatal, message}], dropped, config}.
// `dropped` lists keys we wrote that the schema does not know (zod strips them silently); `config` is
// the parsed config as Continue sees it, for comparison with the inventory.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [prefix, ...files] = process.argv.slice(2);
const pkg = join(prefix, "node_modules", "@continuedev", "config-yaml", "dist", "index.js");
const yamlPkg = join(prefix, "node_modules", "yaml", "dist", "index.js");
const { parseConfigYaml, validateConfigYaml } = await import(pathToFileURL(pkg).href);
const YAML = (await import(pathToFileURL(yamlPkg).href)).default;

// Paths present in `raw` but missing from `parsed`.
function dropped(raw, parsed, path = "") {
  if (raw === null || typeof raw !== "object") return [];
  return Object.keys(raw).flatMap((key) =>
    parsed === null || typeof parsed !== "object" || !(key in parsed)
      ? [`${path}${key}`]
      : dropped(raw[key], parsed[key], `${path}${key}.`),
  );
}

const results = files.map((file) => {
  const text = readFileSync(file, "utf8");
  try {
    const config = parseConfigYaml(text);
    return { file, parseError: null, errors: validateConfigYaml(config),
             dropped: dropped(YAML.parse(text), config), config };
  } catch (error) {
    return { file, parseError: error.message, errors: [], dropped: [], config: null };
  }
});
console.log(JSON.stringify(results));
