// dns-packet's tables of record type and class mnemonics, which the package ships without type declarations.
declare module 'dns-packet/types.js' {
  const types: { toString(type: number): string };
  export default types;
}

declare module 'dns-packet/classes.js' {
  const classes: { toString(klass: number): string };
  export default classes;
}
