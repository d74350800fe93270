// The first check of edited arguments, before they are sent.


/**
 * Checks `value` against the common JSON Schema keywords, so an edit with
 * a wrong field is caught before it is sent; the server validates fully.
 */
export function schemaErrors(schema, value, path = "") {
  if (!schema || typeof schema !== "object") return [];
  const errors = [];
  const at = path || "/";
  const kind = (v) => (v === null ? "null" : Array.isArray(v) ? "array" : Number.isInteger(v) ? "integer" : typeof v);
  if (schema.type) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    const k = kind(value);
    const ok = types.some((t) => t === k || (t === "number" && k === "integer"));
    if (!ok) return [`${at}: expected ${types.join(" or ")}, got ${k}`];
  }
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) errors.push(`${at}: not one of ${JSON.stringify(schema.enum)}`);
  if ("const" in schema && JSON.stringify(schema.const) !== JSON.stringify(value)) errors.push(`${at}: must be ${JSON.stringify(schema.const)}`);
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) errors.push(`${at}: less than ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) errors.push(`${at}: more than ${schema.maximum}`);
    if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) errors.push(`${at}: must be more than ${schema.exclusiveMinimum}`);
    if (schema.exclusiveMaximum !== undefined && value >= schema.exclusiveMaximum) errors.push(`${at}: must be less than ${schema.exclusiveMaximum}`);
  }
  if (typeof value === "string") {
    if (schema.minLength !== undefined && value.length < schema.minLength) errors.push(`${at}: shorter than ${schema.minLength}`);
    if (schema.maxLength !== undefined && value.length > schema.maxLength) errors.push(`${at}: longer than ${schema.maxLength}`);
    if (schema.pattern) {
      try {
        if (!new RegExp(schema.pattern, "u").test(value)) errors.push(`${at}: does not match ${schema.pattern}`);
      } catch {
        // A pattern JavaScript cannot read is left to the server.
      }
    }
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) errors.push(`${at}: fewer than ${schema.minItems} items`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) errors.push(`${at}: more than ${schema.maxItems} items`);
    if (schema.items && typeof schema.items === "object") value.forEach((v, i) => errors.push(...schemaErrors(schema.items, v, `${path}/${i}`)));
  }
  if (kind(value) === "object") {
    for (const name of schema.required || []) if (!(name in value)) errors.push(`${path}/${name}: required`);
    const props = schema.properties || {};
    for (const [name, v] of Object.entries(value)) {
      if (props[name]) errors.push(...schemaErrors(props[name], v, `${path}/${name}`));
      else if (schema.additionalProperties === false) errors.push(`${path}/${name}: not allowed`);
      else if (typeof schema.additionalProperties === "object") errors.push(...schemaErrors(schema.additionalProperties, v, `${path}/${name}`));
    }
  }
  return errors;
}
