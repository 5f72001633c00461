"""The method contract (`protocol`), typed method parameters (`params`) and the method registry
(`registry`): everything a method module imports besides `harness.components`."""
