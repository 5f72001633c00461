"""A board's data: dataset adapters and generators, DICOM decoding, the verified image cache,
loading a board's manifest and images, local copies (`xrbench data`), ground truth and the
stress suite."""
