"""Zero-shot classification and labeling: prompts, scoring, one image or a whole
collection labelled from its stored vectors."""
