"""Task data: GLUE (Hub or original GLUE tsv folder) and SQuAD, loaded into a uniform schema."""
