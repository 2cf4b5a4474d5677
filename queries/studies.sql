-- Every study in the data cut, for the study picker and the portfolio.
SELECT *
FROM studies
ORDER BY study_id
